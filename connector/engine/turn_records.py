"""How a turn step records its outcome: one fenced, conditional write per step.

Every write is conditional on this instance still holding the turn's claim (``claim_owner``),
so an instance that stood still past its lease writes nothing and drops its step; a remote side
effect (asking, posting) comes only after such a write succeeded. Shared by the asking steps
(``turns.py``) and the posting step (``posting.py``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, TextClause, bindparam, text, update
from sqlmodel import Session

from connector.core.errors import RateLimited, RemoteError, maybe_received
from connector.store.db import write_scope
from connector.store.models import ChatSession, Turn, TurnState, check_transition, utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger("connector.engine.turns")


def save(
    engine: Runtime, turn: Turn, values: dict[str, Any], *,
    touch_session_at: datetime | None = None, also: Callable[[Connection], None] | None = None,
) -> bool:
    """Write a step's outcome in one short transaction and mirror it on the claimed row.

    Only the columns the step decided are written: ingest may meanwhile have marked the row
    superseded or cancelled it, and the next step's check sees that. Nothing is written (False)
    when the claim is no longer this instance's: ingest cancelled the turn, or another instance
    took it over while this one stood still.
    """
    with write_scope(engine.db) as db:
        if not write_turn(db, turn, values, engine.instance_id):
            db.rollback()
            log.info("turn %d: no longer ours (cancelled or taken over); step dropped", turn.id,
                     extra=turn_fields(turn))
            return False
        if touch_session_at is not None:
            db.execute(update(ChatSession).where(ChatSession.session_id == turn.session_id)
                       .values(last_customer_at=touch_session_at))
        if also is not None:
            also(db)
    return True


def fence(engine: Runtime, turn: Turn, **stamp: Any) -> bool:
    """Confirm the claim right before a remote side effect, extending it (and writing
    ``stamp``); False: the turn is no longer ours, so the side effect must not happen."""
    return save(engine, turn, {"claim_until": utcnow() + engine.lease_ttl, **stamp})


def write_turn(db: Connection | Session, turn: Turn, values: dict[str, Any], owner: str) -> bool:
    """Write ``values`` to the turn's row in the caller's transaction if ``owner`` still holds
    its claim; mirror them on ``turn``. Returns whether the row was written."""
    if "state" in values:
        check_transition(turn.state, values["state"])
    result = db.execute(_update_turn(frozenset(values)),
                        {**values, "turn_id": turn.id, "owner": owner})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for key, value in values.items():
        setattr(turn, key, value)
    return True


@functools.cache
def _update_turn(columns: frozenset[str]) -> TextClause:
    """``UPDATE turn SET <columns> WHERE id = :turn_id AND claim_owner = :owner``, built once
    per set of columns.

    Typed bind parameters keep the columns' own conversions (datetimes stored as SQLite text,
    enums as their values); an expression-language UPDATE rebuilt on every step cost several
    times the statement itself.
    """
    table = Turn.__table__  # type: ignore[attr-defined]
    names = sorted(columns)
    statement = text(f"UPDATE turn SET {', '.join(f'{c} = :{c}' for c in names)} "
                     "WHERE id = :turn_id AND claim_owner = :owner")
    return statement.bindparams(*(bindparam(c, type_=table.c[c].type) for c in names))


def released(delay: float = 0.0) -> dict[str, Any]:
    now = utcnow()
    return {"claim_owner": None, "claim_until": None,
            "next_attempt_at": now + timedelta(seconds=delay), "updated_at": now}


def wait_out(engine: Runtime, turn: Turn, exc: RemoteError) -> None:
    """A transient error: try the same step again later, however often (see the module
    docstring); ``attempts`` only grows the backoff and shows in ``status``.

    A question the server provably never took (a 429 or 5xx answer, a connection never opened)
    loses the stamp that says it may have been asked, so its next ask is no repeat.
    """
    attempts = turn.attempts + 1
    delay = max(exc.retry_after or 0.0, engine.backoff(attempts))
    values: dict[str, Any] = {"attempts": attempts, "reason": f"waiting: {exc}"[:500],
                              **released(delay)}
    if turn.state == TurnState.QUEUED and not maybe_received(exc):
        values["submitted_at"] = None
    save(engine, turn, values)
    level = logging.INFO if isinstance(exc, RateLimited) or attempts == 1 else logging.WARNING
    log.log(level, "turn %d: %s; try %d in %.1fs", turn.id, exc, attempts + 1, delay,
            extra=turn_fields(turn))


def turn_fields(turn: Turn) -> dict[str, object]:
    """The identifiers every event and log line about a turn carries."""
    return {"adapter": turn.adapter, "ticket_id": turn.ticket_id, "session_id": turn.session_id,
            "request_id": turn.request_id, "turn_id": turn.id}
