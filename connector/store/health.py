"""Read-only health queries: what waits on errors instead of moving, per adapter.

Shared by ``connector status`` and the ops server's ``/readyz`` and metrics, which is why it sits
in the store rather than in either of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from connector.core.redact import redact
from connector.store.models import (
    ACTIVE_TURN_STATES,
    Feedback,
    FeedbackState,
    TicketRecord,
    Turn,
    TurnState,
)


def troubles(db: Session, adapter: str, now) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What waits on errors instead of moving: the things a healthy-looking count hides.

    ``fallbacks`` are posted turns that carry the fallback note instead of an answer (counted
    under ``posted`` too); ``waiting_on_uppzy`` are questions waiting for Uppzy to answer again
    (an outage shows here); ``reads_failing`` are tickets whose conversation read keeps failing;
    ``expired_claims`` are turns whose holder stopped renewing (a dead or stalled instance),
    waiting to be taken over; ``feedback`` counts what is pending or failed.
    """
    def count(query) -> int:  # type: ignore[no-untyped-def]
        return int(db.exec(query).one() or 0)

    def latest(query) -> str | None:  # type: ignore[no-untyped-def]
        row = db.exec(query.limit(1)).first()
        return redact(row) if row else None

    uppzy_waits = (Turn.adapter == adapter, col(Turn.attempts) > 0,
                   col(Turn.state).in_([TurnState.QUEUED, TurnState.SUBMITTED]),
                   col(Turn.reason).startswith("waiting:"))
    reads = (TicketRecord.adapter == adapter, col(TicketRecord.needs_sync),
             col(TicketRecord.sync_error).is_not(None))
    feedback = dict(db.exec(select(Feedback.state, func.count()).where(
        Feedback.adapter == adapter).group_by(Feedback.state)).all())
    return {
        "fallbacks": count(select(func.count()).select_from(Turn).where(
            Turn.adapter == adapter, Turn.state == TurnState.POSTED,
            Turn.outcome == "fallback")),
        "waiting_on_uppzy": {
            "turns": count(select(func.count()).select_from(Turn).where(*uppzy_waits)),
            "last_error": latest(select(Turn.reason).where(*uppzy_waits)
                                 .order_by(col(Turn.updated_at).desc())),
        },
        "reads_failing": {
            "tickets": count(select(func.count()).select_from(TicketRecord).where(*reads)),
            "last_error": latest(select(TicketRecord.sync_error).where(*reads)
                                 .order_by(col(TicketRecord.sync_after).desc())),
        },
        "expired_claims": count(select(func.count()).select_from(Turn).where(
            Turn.adapter == adapter, col(Turn.state).in_(ACTIVE_TURN_STATES),
            col(Turn.claim_until).is_not(None), col(Turn.claim_until) < now)),
        "feedback": {s.value: int(feedback.get(s.value, 0)) for s in FeedbackState},
    }
