"""Work that follows the answers: closing sessions of resolved tickets, sending feedback.

Both calls are idempotent at Uppzy, so a retry after a crash is harmless; failures back off and
end, after ``max_attempts``, in a visible ``failed`` state rather than a silent loop.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, select

from connector.errors import Conflict, NotFound, RemoteError
from connector.store.db import session_scope
from connector.store.models import ChatSession, Feedback, utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Engine

log = logging.getLogger(__name__)


def close_sessions(engine: Engine, limit: int = 50) -> int:
    """Send the close for sessions marked ``closing``; returns how many were closed."""
    now = utcnow()
    with session_scope(engine.db) as db:
        due = list(db.exec(select(ChatSession).where(
            ChatSession.state == "closing", ChatSession.next_attempt_at <= now
        ).order_by(col(ChatSession.next_attempt_at)).limit(limit)))
    closed = 0
    for chat in due:
        try:
            engine.uppzy.close_session(chat.site_id, chat.session_id)
        except RemoteError as exc:
            engine.check_uppzy_access(exc)
            _backoff(engine, ChatSession, chat.session_id, exc, "closing session")
            continue
        engine.note_uppzy_ok()
        with session_scope(engine.db) as db:
            row = db.get(ChatSession, chat.session_id)
            if row is not None and row.state == "closing":
                row.state = "closed"
                row.closed_at = utcnow()
                db.add(row)
                closed += 1
        log.info("session %s closed (%s)", chat.session_id, chat.reason or "resolved")
        engine.emit("session_closed", adapter=chat.adapter, session_id=chat.session_id)
    return closed


def send_feedback(engine: Engine, limit: int = 50) -> int:
    now = utcnow()
    with session_scope(engine.db) as db:
        due = list(db.exec(select(Feedback).where(
            Feedback.state == "pending", Feedback.next_attempt_at <= now
        ).order_by(col(Feedback.id)).limit(limit)))
    sent = 0
    for item in due:
        try:
            engine.uppzy.feedback(item.site_id, item.session_id, item.request_id, item.value)
        except NotFound as exc:
            _fail(engine, item.id, f"Uppzy does not know the request: {exc}")
            continue
        except RemoteError as exc:
            engine.check_uppzy_access(exc)
            if isinstance(exc, Conflict) or exc.retryable:
                _backoff(engine, Feedback, item.id, exc, "sending feedback")
            else:
                _fail(engine, item.id, str(exc))
            continue
        engine.note_uppzy_ok()
        with session_scope(engine.db) as db:
            row = db.get(Feedback, item.id)
            if row is not None:
                row.state = "sent"
                row.sent_at = utcnow()
                db.add(row)
                sent += 1
        log.info("feedback %s sent for %s (%s/%s)", item.value, item.request_id, item.adapter,
                 item.ticket_id)
        engine.emit("feedback_sent", adapter=item.adapter, ticket_id=item.ticket_id,
                    request_id=item.request_id, value=item.value)
    return sent


def _backoff(engine: Engine, model: type, key: object, exc: RemoteError, doing: str) -> None:
    with session_scope(engine.db) as db:
        row = db.get(model, key)
        if row is None:
            return
        row.attempts += 1
        row.reason = f"{doing}: {exc}"[:500]
        if row.attempts >= engine.config.engine.max_attempts:
            row.state = "failed"
            log.error("%s %s: giving up %s after %d attempts: %s", model.__name__, key, doing,
                      row.attempts, exc)
        else:
            delay = max(exc.retry_after or 0.0, engine.backoff(row.attempts))
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        db.add(row)


def _fail(engine: Engine, feedback_id: int | None, reason: str) -> None:
    with session_scope(engine.db) as db:
        row = db.get(Feedback, feedback_id)
        if row is not None:
            row.state = "failed"
            row.reason = reason[:500]
            db.add(row)
    log.warning("feedback %s failed: %s", feedback_id, reason)


