"""Work that follows the answers: closing sessions of resolved tickets, sending feedback.

Each close and each feedback is claimed by one instance, like a turn, and the claim is confirmed
by a conditional write right before the call (the fence), so several instances never send the
same one. That write also stamps the call's start on the row (``closed_at``, ``sent_at``) while
the outcome is still open: a row found with the stamp but no outcome was maybe sent by a holder
that died, and sending it again is counted as a repeat (both calls are idempotent at Uppzy).

Transient errors (5xx, 429, transport, a malformed body) never end a close or a feedback: they
wait with a backoff capped at ``engine.max_backoff`` until Uppzy answers. Only a definitive
answer (the site or request is unknown, the call is refused) ends one as ``failed``, visibly.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from connector.core.errors import RemoteError, maybe_received
from connector.engine.outcomes import SITE_ONLY, Action, Step, disposition
from connector.store import claims
from connector.store.claims import Row
from connector.store.models import (
    ChatSession,
    Feedback,
    FeedbackState,
    SessionState,
    utcnow,
)

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)


def close_sessions(engine: Runtime, limit: int = 50) -> int:
    """Send the close for sessions marked ``closing``; returns how many were closed."""
    closed = 0
    for chat in _claim(engine, ChatSession, engine.sessions_held, limit):
        try:
            if not _fence(engine, chat, "closed_at", "close"):
                continue
            try:
                engine.uppzy.close_session(chat.site_id, chat.session_id)
            except RemoteError as exc:
                _failed_call(engine, chat, exc, "closing session", Step.CLOSE)
                continue
            engine.note_uppzy_ok()
            if _finish(engine, chat, state=SessionState.CLOSED, closed_at=utcnow()):
                closed += 1
                log.info("session %s closed (%s)", chat.session_id, chat.reason or "resolved")
                engine.emit("session_closed", adapter=chat.adapter, session_id=chat.session_id)
        finally:
            engine.sessions_held.discard(chat.session_id)
    return closed


def send_feedback(engine: Runtime, limit: int = 50) -> int:
    sent = 0
    for item in _claim(engine, Feedback, engine.feedback_held, limit):
        try:
            if not _fence(engine, item, "sent_at", "feedback"):
                continue
            try:
                engine.uppzy.feedback(item.site_id, item.session_id, item.request_id, item.value)
            except RemoteError as exc:
                _failed_call(engine, item, exc, "sending feedback", Step.FEEDBACK)
                continue
            engine.note_uppzy_ok()
            if _finish(engine, item, state=FeedbackState.SENT, sent_at=utcnow()):
                sent += 1
                log.info("feedback %s sent for %s (%s/%s)", item.value, item.request_id,
                         item.adapter, item.ticket_id)
                engine.emit("feedback_sent", adapter=item.adapter, ticket_id=item.ticket_id,
                            request_id=item.request_id, value=item.value)
        finally:
            engine.feedback_held.discard(item.id)  # type: ignore[arg-type]
    return sent


def _claim(engine: Runtime, model: type[Row], held: set, limit: int) -> list[Row]:  # type: ignore[type-arg]
    rows = claims.claim_side_effects(engine.db, model, engine.instance_id, engine.lease_ttl,
                                     limit)
    held.update(_key(row) for row in rows)
    return list(rows)


def _key(row: Row) -> object:
    return row.session_id if isinstance(row, ChatSession) else row.id


def _fence(engine: Runtime, row: Row, stamp: str, kind: str) -> bool:
    """Confirm the claim and stamp the call's start; count a call that may repeat one."""
    if getattr(row, stamp) is not None:
        log.info("%s %s: sending again (an earlier attempt may have reached Uppzy)",
                 kind, _key(row))
        engine.emit("side_effect_repeated", kind=kind, adapter=row.adapter)
    ok = claims.confirm(engine.db, row, engine.instance_id, engine.lease_ttl,
                        **{stamp: utcnow()})
    if not ok:
        log.info("%s %s: taken over by another instance; not sending", kind, _key(row))
    return ok


def _finish(engine: Runtime, row: Row, **values: object) -> bool:
    """Record the outcome and release the claim, if the claim is still ours."""
    return claims.finish(engine.db, row, engine.instance_id, **values)


def _failed_call(engine: Runtime, row: Row, exc: RemoteError, doing: str, step: Step) -> None:
    """Carry out the outcome table: stop the daemon (a wrong key or site), end the row as
    ``failed`` (a definitive refusal), or wait and try again (anything transient; for
    feedback, also a 409: the request is not completed yet, which it will be)."""
    action = disposition(exc, step)
    if action is Action.STOP:
        engine.check_uppzy_access(exc, site=row.site_id if step in SITE_ONLY else None)
    attempts = row.attempts + 1
    reason = f"{doing}: {exc}"[:500]
    if action is Action.FAIL:
        failed = SessionState.FAILED if isinstance(row, ChatSession) else FeedbackState.FAILED
        _finish(engine, row, state=failed, attempts=attempts, reason=reason)
        log.error("%s %s: %s failed for good: %s", type(row).__name__, _key(row), doing, exc)
        return
    engine.note_uppzy_failure(exc)
    delay = max(exc.retry_after or 0.0, engine.backoff(attempts))
    stamp = "closed_at" if isinstance(row, ChatSession) else "sent_at"
    values: dict[str, object] = {"attempts": attempts, "reason": reason,
                                 "next_attempt_at": utcnow() + timedelta(seconds=delay)}
    if not maybe_received(exc):  # refused: surely not done, so the next call is no repeat
        values[stamp] = None
    _finish(engine, row, **values)
    log.warning("%s %s: %s failed (%s); again in %.0fs", type(row).__name__, _key(row), doing,
                exc, delay)
