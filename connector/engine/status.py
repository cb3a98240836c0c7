"""What ``connector status`` reports: per adapter, where polling stands and how turns ended."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from connector.config import Config
from connector.redact import redact
from connector.store.models import AdapterState, ChatSession, TicketRecord, Turn, TurnState, utcnow

RECENT_FAILURES = 5


def collect(config: Config, db_engine: Engine) -> dict[str, Any]:
    now = utcnow()
    report: dict[str, Any] = {"generated_at": now.isoformat(), "adapters": []}
    with Session(db_engine) as db:
        for settings in config.adapters:
            name = settings.name
            state = db.get(AdapterState, name)
            turns = dict(db.exec(
                select(Turn.state, func.count()).where(Turn.adapter == name).group_by(Turn.state)
            ).all())
            sessions = dict(db.exec(
                select(ChatSession.state, func.count()).where(ChatSession.adapter == name)
                .group_by(ChatSession.state)
            ).all())
            failures = db.exec(
                select(Turn.ticket_id, Turn.reason, Turn.updated_at).where(
                    Turn.adapter == name, Turn.state == TurnState.FAILED
                ).order_by(col(Turn.updated_at).desc()).limit(RECENT_FAILURES)
            ).all()
            tickets = db.exec(select(func.count()).select_from(TicketRecord).where(
                TicketRecord.adapter == name)).one()
            compared, mean = db.exec(select(func.count(Turn.similarity), func.avg(Turn.similarity))
                                     .where(Turn.adapter == name,
                                            Turn.state == TurnState.SHADOWED)).one()
            paused = bool(state and state.paused_until and state.paused_until > now)
            report["adapters"].append({
                "name": name,
                "type": settings.type,
                "cursor_age_seconds": _age(now, state.cursor_moved_at if state else None),
                "last_poll_ok_seconds_ago": _age(now, state.last_poll_ok_at if state else None),
                "polled_by": state.lease_owner if state and state.lease_until and
                state.lease_until > now else None,
                "paused": paused,
                "pause_reason": redact(state.pause_reason or "") if paused and state else None,
                "tickets": tickets,
                "turns": {s.value: int(turns.get(s.value, 0)) for s in TurnState},
                "sessions": {"open": int(sessions.get("open", 0)),
                             "closing": int(sessions.get("closing", 0)),
                             "closed": int(sessions.get("closed", 0))},
                "shadow": {
                    "enabled": config.shadow(settings),
                    "answers": int(turns.get(TurnState.SHADOWED.value, 0)),
                    "compared_with_agent_reply": int(compared or 0),
                    "mean_similarity": None if mean is None else round(float(mean), 3),
                },
                "recent_failures": [
                    {"ticket": t, "reason": redact(r or ""), "at": at.isoformat()}
                    for t, r, at in failures
                ],
            })
    return report


def _age(now, when) -> float | None:  # type: ignore[no-untyped-def]
    return None if when is None else round((now - when).total_seconds(), 1)
