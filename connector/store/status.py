"""Read-only snapshots of where each adapter stands: what ``connector status``, ``/readyz``, the
metrics gauges and the stale-cursor notification read.

The commands and the daemon know no SQL, so their reads are here. Each function opens the same
kind of transaction its caller opened before the reads moved: the daemon's reads a
``session_scope``, ``status`` one plain session for all its adapters, rolled back at the end.
Rows come back detached (loaded, no lazy attributes), for use after the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from connector.store.adoption import adoption_counts
from connector.store.db import session_scope
from connector.store.health import troubles
from connector.store.models import AdapterState, ChatSession, TicketRecord, Turn, TurnState


@dataclass(frozen=True)
class Gauges:
    """What the metrics read at scrape time, from one transaction."""

    turns: dict[tuple[str, str], int]  # (adapter, state) -> turns, for the states that have any
    adapters: dict[str, AdapterState]


class Failure(NamedTuple):
    ticket_id: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class AdapterSnapshot:
    """One adapter as ``connector status`` counts it: raw counts by state (states without rows
    are missing), the latest failed turns, shadow-mode similarity, troubles and adoption."""

    state: AdapterState | None
    turns: dict[str, int]
    sessions: dict[str, int]
    recent_failures: list[Failure]
    tickets: int
    shadow_compared: int
    shadow_mean: float | None
    troubles: dict[str, Any]
    adoption: dict[str, int]


def adapter_states(engine: Engine) -> dict[str, AdapterState]:
    """Every adapter's poll state (cursor, last good poll, pause, lease), by adapter name."""
    with session_scope(engine) as db:
        return _adapter_states(db)


def gauges(engine: Engine) -> Gauges:
    """Turn counts and adapter states from one transaction, so a scrape shows one moment."""
    with session_scope(engine) as db:
        counts = {(a, s): n for a, s, n in db.exec(
            select(Turn.adapter, Turn.state, func.count()).group_by(Turn.adapter, Turn.state)
        ).all()}
        return Gauges(counts, _adapter_states(db))


def adapters_troubles(engine: Engine, names: Iterable[str], now: datetime
                      ) -> dict[str, dict[str, Any]]:
    """``health.troubles`` of each adapter, from one transaction."""
    with session_scope(engine) as db:
        return {name: troubles(db, name, now) for name in names}


def adapter_snapshots(engine: Engine, names: Iterable[str], now: datetime,
                      recent_failures: int) -> list[AdapterSnapshot]:
    """Each adapter of ``names``, in that order, with its ``recent_failures`` latest failed
    turns; all from one transaction that writes nothing."""
    with Session(engine) as db:
        return [_snapshot(db, name, now, recent_failures) for name in names]


def _adapter_states(db: Session) -> dict[str, AdapterState]:
    return {s.adapter: s for s in db.exec(select(AdapterState)).all()}


def _snapshot(db: Session, name: str, now: datetime, recent_failures: int) -> AdapterSnapshot:
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
        ).order_by(col(Turn.updated_at).desc()).limit(recent_failures)
    ).all()
    tickets = db.exec(select(func.count()).select_from(TicketRecord).where(
        TicketRecord.adapter == name)).one()
    compared, mean = db.exec(select(func.count(Turn.similarity), func.avg(Turn.similarity))
                             .where(Turn.adapter == name,
                                    Turn.state == TurnState.SHADOWED)).one()
    return AdapterSnapshot(
        state=state, turns=turns, sessions=sessions,
        recent_failures=[Failure(*row) for row in failures], tickets=tickets,
        shadow_compared=compared, shadow_mean=mean, troubles=troubles(db, name, now),
        adoption=adoption_counts(db, name))
