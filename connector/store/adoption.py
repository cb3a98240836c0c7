"""Reads and writes of draft adoption: the verdicts, implicit feedback, expiry, and the counts
``status`` shows (``report``'s rows: ``reports.py``). Which posted drafts wait for a verdict is
read with our posts, in ``turns.ours``.

A posted draft is a turn in state ``posted`` with outcome ``draft`` (a fallback note never is);
its ``adoption`` stays NULL while it is pending. Every write here is conditional on the verdict
still being open (``adoption IS NULL``), so two instances reading the same ticket, or a read
repeated after a crash, record one verdict and count it once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, update
from sqlmodel import Session, col, select

from connector.store.db import Database, read_session, session_scope
from connector.store.models import Feedback, FeedbackState, Turn, TurnState

DRAFT = "draft"
PENDING = "pending"


def _is_draft() -> tuple:  # type: ignore[type-arg]
    return (Turn.state == TurnState.POSTED, Turn.outcome == DRAFT)


def record_verdict(db: Session, turn: Turn, adoption: str, score: float | None,
                   reply_at: datetime | None, now: datetime) -> bool:
    """Write the verdict once; False when another read already decided it."""
    result = db.execute(update(Turn).where(Turn.id == turn.id, col(Turn.adoption).is_(None))
                        .values(adoption=adoption, adoption_score=score, adopted_at=now,
                                agent_reply_at=reply_at))
    return result.rowcount == 1  # type: ignore[attr-defined]


def queue_implicit_feedback(db: Session, turn: Turn, value: str, not_before: datetime) -> bool:
    """Owe Uppzy an implicit rating for the turn's request, unless any rating (an agent's tag
    above all) is already owed or sent for it."""
    if turn.request_id is None or db.exec(select(Feedback.id).where(
            Feedback.request_id == turn.request_id)).first() is not None:
        return False
    db.add(Feedback(adapter=turn.adapter, ticket_id=turn.ticket_id, session_id=turn.session_id,
                    site_id=turn.site_id, request_id=turn.request_id, value=value,
                    source="implicit", next_attempt_at=not_before))
    return True


def tag_replaces_implicit(db: Session, request_id: str, value: str, now: datetime) -> bool:
    """An agent's tag wins over an implicit rating not sent yet; True when it replaced one."""
    result = db.execute(update(Feedback).where(
        Feedback.request_id == request_id, Feedback.source == "implicit",
        Feedback.state == FeedbackState.PENDING,
    ).values(value=value, source="tag", next_attempt_at=now))
    return result.rowcount == 1  # type: ignore[attr-defined]


def expire_drafts(db: Database, posted_before: datetime, now: datetime) -> dict[str, int]:
    """Drafts without an agent reply for the whole window end ``expired``; per adapter."""
    stale = and_(*_is_draft(), col(Turn.adoption).is_(None), col(Turn.posted_at) < posted_before)
    with read_session(db) as session:  # mostly none: no write lock for nothing
        if session.exec(select(Turn.id).where(stale).limit(1)).first() is None:
            return {}
    with session_scope(db) as session:
        counts = dict(session.exec(select(Turn.adapter, func.count()).where(stale)
                                   .group_by(Turn.adapter)).all())
        if counts:
            session.execute(update(Turn).where(stale).values(adoption="expired", adopted_at=now))
    return {adapter: int(n) for adapter, n in counts.items()}


def adoption_counts(db: Session, adapter: str) -> dict[str, int]:
    """Posted drafts by verdict; pending ones under ``pending``."""
    rows = db.exec(select(Turn.adoption, func.count()).where(
        Turn.adapter == adapter, *_is_draft()).group_by(Turn.adoption)).all()
    return {(verdict or PENDING): int(n) for verdict, n in rows}
