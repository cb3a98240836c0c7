"""How a turn step records its outcome: one fenced, conditional write per step.

Every write is conditional on this instance still holding the turn's claim (``claim_owner``),
so an instance that stood still past its lease writes nothing and drops its step; a remote side
effect (asking, posting) comes only after such a write succeeded. Shared by the asking steps
(``turns.py``) and the posting step (``posting.py``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connector.core.errors import RateLimited, RemoteError, maybe_received
from connector.store import turns as store
from connector.store.models import Turn, TurnState, utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger("connector.engine.turns")


def save(
    engine: Runtime, turn: Turn, values: dict[str, Any], *,
    touch_session_at: datetime | None = None, post_counted: bool | None = None,
    similarities: dict[int, float] | None = None,
) -> bool:
    """Write a step's outcome (``store.turns.record_outcome``) and mirror it on the claimed row.

    Only the columns the step decided are written: ingest may meanwhile have marked the row
    superseded or cancelled it, and the next step's check sees that. Nothing is written (False)
    when the claim is no longer this instance's: ingest cancelled the turn, or another instance
    took it over while this one stood still.
    """
    if store.record_outcome(engine.writer, turn, values, engine.instance_id,
                            touch_session_at=touch_session_at, post_counted=post_counted,
                            similarities=similarities):
        return True
    log.info("turn %d: no longer ours (cancelled or taken over); step dropped", turn.id,
             extra=turn_fields(turn))
    return False


def fence(engine: Runtime, turn: Turn, **stamp: Any) -> bool:
    """Confirm the claim right before a remote side effect, extending it (and writing
    ``stamp``); False: the turn is no longer ours, so the side effect must not happen."""
    return save(engine, turn, {"claim_until": utcnow() + engine.lease_ttl, **stamp})


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
