"""Adapter pauses as operators see and end them.

An adapter is paused when its helpdesk refused the credentials; the pause is a time in the
database so that every instance honours it. It must end when its cause does, not only when it
runs out: a restart (which comes with a fixed config), a ``check`` that proved the credentials,
or ``connector resume``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, update
from sqlmodel import Session

from connector.store.db import session_scope
from connector.store.models import AdapterState, utcnow
from connector.store.plain import bound


def paused(engine: Engine) -> dict[str, str]:
    """Adapters paused right now, with the reason shown to operators."""
    with session_scope(engine) as db:
        return paused_in(db, utcnow())


_PAUSED = bound("SELECT adapter, pause_reason FROM adapter_state "
                "WHERE paused_until IS NOT NULL AND paused_until > :paused_until",
                AdapterState.__table__, ["paused_until"])  # type: ignore[attr-defined]


def paused_in(db: Connection | Session, now: datetime) -> dict[str, str]:
    """``paused`` in the caller's transaction, at ``now``: asked by every dispatch that
    claims reads, so plain SQL (``store.plain``)."""
    return {name: reason or "paused"
            for name, reason in _PAUSED.run(db, {"paused_until": now})}


def resume(engine: Engine, names: list[str] | None = None) -> list[str]:
    """End the pauses of ``names`` (None: every adapter); returns the adapters resumed."""
    ended = [n for n in paused(engine) if names is None or n in names]
    if ended:
        with session_scope(engine) as db:
            db.execute(update(AdapterState).where(
                AdapterState.adapter.in_(ended))  # type: ignore[attr-defined]
                .values(paused_until=None, pause_reason=None, consecutive_failures=0))
    return ended
