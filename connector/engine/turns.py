"""The turn state machine: ask Uppzy, wait for the answer, post it once.

Each step reads the row, makes at most one remote call (two when a post must first look for a
previous attempt's marker), writes the outcome and commits. Waiting is a ``next_attempt_at`` on
the row, never a sleeping worker. A turn whose ticket was resolved, superseded by a newer
customer message, or answered by an agent meanwhile ends cancelled, with the reason kept.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_
from sqlmodel import Session, col, select

from adapters.base import Ticket
from connector.engine import render, replies, sessions
from connector.engine.ingest import cancel, handle_adapter_error, note_own_post
from connector.errors import (
    AuthenticationFailed,
    Conflict,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    RemoteError,
    TransportError,
)
from connector.store import claims
from connector.store.db import session_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    TicketRecord,
    Turn,
    TurnState,
    utcnow,
)
from connector.uppzy import ChatAnswer

if TYPE_CHECKING:
    from connector.engine.runtime import Engine

log = logging.getLogger(__name__)


class UppzyAccessError(Exception):
    """Uppzy refused our key or plan: nothing will work until a human fixes the config."""


def claim_turns(engine: Engine, limit: int) -> list[int]:
    """Lease due turns to this instance; the heartbeat keeps the lease while a step runs."""
    with session_scope(engine.db) as db:
        return claims.claim_turns(db, engine.instance_id, utcnow(), engine.lease_ttl, limit)


def advance(engine: Engine, turn_id: int) -> None:
    """Run the one step the turn is due for, then release the claim."""
    with session_scope(engine.db) as db:
        turn = db.get(Turn, turn_id)
        if turn is None or turn.state not in ACTIVE_TURN_STATES:
            return
        state = turn.state
        shadow = engine.config.shadow(engine.config.adapter(turn.adapter))
        blocked = _why_not_now(db, turn, shadow)
        if blocked is not None:
            cancel(turn, blocked)
            db.add(turn)
            log.info("turn %d cancelled: %s", turn.id, blocked, extra=turn_fields(turn))
            return
        if state == TurnState.QUEUED and _session_busy(db, turn):
            _release(turn, delay=min(1.0, engine.config.uppzy.poll_interval))
            db.add(turn)
            return
    if state == TurnState.QUEUED:
        if engine.config.uppzy.mode == "sync":
            _ask_sync(engine, turn)
        else:
            _submit(engine, turn)
    elif state == TurnState.SUBMITTED:
        _poll(engine, turn)
    elif shadow:
        _shadow(engine, turn)
    else:
        _post(engine, turn)


def _shadow(engine: Engine, turn: Turn) -> None:
    """Shadow mode: keep the answer for comparison with what the agent sends; post nothing."""
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.state = TurnState.SHADOWED
        _release(row)
        db.add(row)
        db.flush()
        replies.compare_shadowed(db, row.adapter, row.ticket_id)
    log.info("turn %d answered in shadow mode (not posted)", turn.id, extra=turn_fields(row))
    engine.emit("turn_shadowed", **turn_fields(row))


def _release(turn: Turn, *, delay: float = 0.0) -> None:
    turn.claim_owner = None
    turn.claim_until = None
    turn.next_attempt_at = utcnow() + timedelta(seconds=delay)
    turn.updated_at = utcnow()


def _why_not_now(db: Session, turn: Turn, shadow: bool) -> str | None:
    """The reason this turn must not be answered any more, if there is one.

    A turn already asked keeps polling even when superseded (its session must stay with one
    request in flight); it is dropped when its answer is ready. In shadow mode an agent's reply
    is what the answer is compared with, so it cancels nothing.
    """
    ticket = db.exec(select(TicketRecord).where(
        TicketRecord.adapter == turn.adapter, TicketRecord.external_id == turn.ticket_id
    )).first()
    if ticket is not None and ticket.resolved and turn.state != TurnState.POSTING:
        return f"ticket {ticket.status or 'resolved'}"
    if turn.state in (TurnState.SUBMITTED, TurnState.POSTING):
        return None
    newer = db.exec(select(Turn.id).where(
        Turn.adapter == turn.adapter, Turn.ticket_id == turn.ticket_id, col(Turn.id) > turn.id
    )).first()
    if newer is not None:
        return "superseded by a newer customer message"
    if not shadow and replies.agent_reply_after(db, turn) is not None:
        return "answered by an agent"
    return None


def _session_busy(db: Session, turn: Turn) -> bool:
    """One request in flight per session, and turns of one session asked in order."""
    other = db.exec(select(Turn.id).where(
        Turn.session_id == turn.session_id, col(Turn.id) != turn.id,
        or_(Turn.state == TurnState.SUBMITTED,
            (Turn.state == TurnState.QUEUED) & (col(Turn.id) < turn.id)),
    )).first()
    return other is not None


# ----- asking -------------------------------------------------------------------------------
def _submit(engine: Engine, turn: Turn) -> None:
    try:
        request_id = engine.uppzy.submit(
            turn.site_id, turn.session_id, turn.question,
            response_language=engine.config.uppzy.response_language,
        )
    except RemoteError as exc:
        _chat_error(engine, turn, exc)
        return
    engine.note_uppzy_ok()
    now = utcnow()
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.state = TurnState.SUBMITTED
        row.request_id = request_id
        row.submitted_at = now
        row.attempts = 0
        row.polls = 0
        _touch_session(db, row, now)
        _release(row, delay=engine.estimator.first_poll_delay(row.site_id))
        db.add(row)
    log.info("turn %d asked Uppzy", turn.id, extra=turn_fields(row))
    engine.emit("turn_submitted", **turn_fields(row))
    log.debug("turn %d question: %s", turn.id, turn.question, extra=turn_fields(row))


def _ask_sync(engine: Engine, turn: Turn) -> None:
    started = utcnow()
    try:
        answer = engine.uppzy.chat(
            turn.site_id, turn.session_id, turn.question,
            response_language=engine.config.uppzy.response_language,
        )
    except RemoteError as exc:
        if isinstance(exc, TransportError) and exc.sent:
            _give_up(engine, turn, "no answer from Uppzy within the read timeout")
            return
        _chat_error(engine, turn, exc)
        return
    engine.note_uppzy_ok()
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.submitted_at = started
        _touch_session(db, row, started)
        _store_answer(engine, row, answer)
        db.add(row)


def _poll(engine: Engine, turn: Turn) -> None:
    assert turn.request_id is not None
    try:
        status = engine.uppzy.status(turn.site_id, turn.request_id)
    except NotFound:
        _give_up(engine, turn, "Uppzy no longer knows the request")
        return
    except RemoteError as exc:
        _chat_error(engine, turn, exc)
        return
    engine.note_uppzy_ok()
    now = utcnow()
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.polls += 1
        submitted = row.submitted_at or now
        if status.done and status.answer is not None:
            engine.estimator.observe(row.site_id, (now - submitted).total_seconds())
            _store_answer(engine, row, status.answer)
        elif status.failed:
            db.add(row)
            db.commit()
            _give_up(engine, row, f"Uppzy could not answer: {status.error}")
            return
        elif (now - submitted).total_seconds() >= engine.config.uppzy.answer_timeout:
            db.add(row)
            db.commit()
            _give_up(engine, row, "no answer within answer_timeout")
            return
        else:
            remaining = engine.config.uppzy.answer_timeout - (now - submitted).total_seconds()
            delay = engine.estimator.next_poll_delay(row.polls, engine.config.uppzy.poll_interval)
            _release(row, delay=max(0.05, min(delay, remaining)))
        db.add(row)


def _store_answer(engine: Engine, row: Turn, answer: ChatAnswer) -> None:
    row.request_id = answer.request_id or row.request_id
    row.answer = answer.answer
    row.confidence_level = answer.confidence_level
    row.confidence_score = answer.confidence_score
    row.answered_at = utcnow()
    row.state = TurnState.ANSWERED
    row.attempts = 0
    low = render.below_threshold(engine.config.draft, answer.confidence_level,
                                 answer.confidence_score)
    row.outcome = "fallback" if low else "draft"
    if low:
        row.reason = "answer below min_confidence"
    _release(row)
    log.info("turn %d answered (confidence %s)", row.id, answer.confidence_level or "n/a",
             extra=turn_fields(row))
    submitted = row.submitted_at or row.answered_at
    engine.emit("turn_answered", **turn_fields(row), polls=row.polls, low_confidence=low,
                seconds=(row.answered_at - submitted).total_seconds(),
                confidence_level=answer.confidence_level)


def _touch_session(db: Session, turn: Turn, at: datetime) -> None:
    chat = db.get(sessions.ChatSession, turn.session_id)
    if chat is not None:
        chat.last_customer_at = at
        db.add(chat)


def _chat_error(engine: Engine, turn: Turn, exc: RemoteError) -> None:
    """Classify an Uppzy error for this turn: stop, retry later, move session, or give up."""
    if isinstance(exc, AuthenticationFailed | PermissionDenied):
        engine.release_claim(turn.id)
        cause = "the API key was rejected" if isinstance(exc, AuthenticationFailed) else \
            "the plan or role does not allow M2M access"
        raise UppzyAccessError(f"Uppzy refused the call: {cause} ({exc.detail or exc.status})")
    if isinstance(exc, Conflict) and turn.state == TurnState.QUEUED:
        _move_to_next_session(engine, turn, exc)
        return
    if exc.retryable:
        _retry_later(engine, turn, exc)
        return
    _give_up(engine, turn, f"Uppzy rejected the request: {exc}")


def _move_to_next_session(engine: Engine, turn: Turn, exc: RemoteError) -> None:
    """Uppzy says the session cannot take the message (closed elsewhere): use the next id."""
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        chat = db.get(sessions.ChatSession, row.session_id)
        if chat is not None and chat.state == "open":
            chat.state = "closed"
            chat.closed_at = utcnow()
            chat.reason = f"refused by Uppzy: {exc.detail or exc.status}"
            db.add(chat)
        ticket = db.exec(select(TicketRecord).where(
            TicketRecord.adapter == row.adapter, TicketRecord.external_id == row.ticket_id
        )).one()
        row.attempts += 1
        if row.attempts >= engine.config.engine.max_attempts:
            db.commit()
            _give_up(engine, row, f"Uppzy refused every session: {exc}")
            return
        row.session_id = sessions.open_session_id(
            db, row.adapter, ticket, engine.config.session, row.site_id
        )
        _release(row)
        db.add(row)
    log.warning("turn %d: session refused by Uppzy (%s); continuing in %s", turn.id,
                exc.status, row.session_id, extra=turn_fields(row))


def _retry_later(engine: Engine, turn: Turn, exc: RemoteError) -> None:
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.attempts += 1
        if row.attempts >= engine.config.engine.max_attempts:
            db.commit()
            _give_up(engine, row, f"gave up after {row.attempts} attempts: {exc}")
            return
        delay = max(exc.retry_after or 0.0, engine.backoff(row.attempts))
        row.reason = f"retrying: {exc}"[:500]
        _release(row, delay=delay)
        db.add(row)
    level = logging.INFO if isinstance(exc, RateLimited) else logging.WARNING
    log.log(level, "turn %d: %s; retry %d in %.1fs", turn.id, exc, row.attempts, delay,
            extra=turn_fields(row))


def _give_up(engine: Engine, turn: Turn, reason: str) -> None:
    """No answer will come: post the fallback note if the team wants one, else fail visibly."""
    fallback = render.render_fallback(engine.config.draft, turn.marker_ref)
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.reason = reason[:500]
        if fallback is None:
            row.state = TurnState.FAILED
            _release(row)
        else:
            row.state = TurnState.ANSWERED
            row.outcome = "fallback"
            row.attempts = 0
            _release(row)
        db.add(row)
    log.warning("turn %d failed: %s%s", turn.id, reason,
                "" if fallback is None else "; posting the fallback note", extra=turn_fields(row))
    engine.emit("turn_failed", **turn_fields(row), reason=reason, fallback=fallback is not None)


# ----- posting ------------------------------------------------------------------------------
def _post(engine: Engine, turn: Turn) -> None:
    adapter = engine.adapters.get(turn.adapter)
    if adapter is None:  # the adapter was removed from the config
        engine.release_claim(turn.id, delay=300)
        return
    text = _text_for(engine, turn)
    if text is None:
        with session_scope(engine.db) as db:
            row = _reload(db, turn)
            cancel(row, row.reason or "low confidence and no fallback configured")
            db.add(row)
        return
    ref = turn.marker_ref
    try:
        if turn.state == TurnState.POSTING:
            # An earlier attempt may have posted before it could record it: look first.
            with session_scope(engine.db) as db:
                ticket = _ticket_of(db, turn)
            found = adapter.find_posted(ticket, render.marker(ref))
            if found is not None:
                _mark_posted(engine, turn, found, reconciled=True)
                return
            if ticket.resolved:  # resolved while our first attempt was unconfirmed
                with session_scope(engine.db) as db:
                    row = _reload(db, turn)
                    cancel(row, f"ticket {ticket.status or 'resolved'}")
                    db.add(row)
                return
        else:
            with session_scope(engine.db) as db:
                row = _reload(db, turn)
                row.state = TurnState.POSTING
                db.add(row)
        posted = adapter.post_draft(turn.ticket_id, text)
    except (NotFound, Moved) as exc:
        with session_scope(engine.db) as db:
            row = _reload(db, turn)
            cancel(row, f"ticket no longer available ({type(exc).__name__})")
            db.add(row)
        return
    except RemoteError as exc:
        if isinstance(exc, TransportError) and exc.sent:
            # The helpdesk may still be writing it: look for it only once it surely finished.
            exc.retry_after = max(exc.retry_after or 0.0, adapter.settings.timeout)
        if isinstance(exc, AuthenticationFailed | PermissionDenied | RateLimited):
            handle_adapter_error(engine, turn.adapter, exc, f"posting on {turn.ticket_id}")
            if not exc.retryable:
                engine.release_claim(turn.id, delay=300)
                return
        if exc.retryable or isinstance(exc, AuthenticationFailed | PermissionDenied):
            _retry_later(engine, turn, exc)
        else:
            with session_scope(engine.db) as db:
                row = _reload(db, turn)
                row.state = TurnState.FAILED
                row.reason = f"the helpdesk refused the post: {exc}"[:500]
                _release(row)
                db.add(row)
            log.error("turn %d: post refused: %s", turn.id, exc, extra=turn_fields(row))
        return
    _mark_posted(engine, turn, posted.external_id, kind=posted.kind)


def _text_for(engine: Engine, turn: Turn) -> str | None:
    ref = turn.marker_ref
    if turn.outcome == "fallback" or turn.answer is None:
        return render.render_fallback(engine.config.draft, ref)
    return render.render_answer(engine.config.draft, ref, turn.answer, turn.confidence_level,
                                turn.confidence_score)


def _mark_posted(
    engine: Engine, turn: Turn, posted_id: str, *, kind: str = "note", reconciled: bool = False
) -> None:
    with session_scope(engine.db) as db:
        row = _reload(db, turn)
        row.state = TurnState.POSTED
        row.posted_id = posted_id
        row.posted_at = utcnow()
        _release(row)
        db.add(row)
        note_own_post(db, row.adapter, row.ticket_id, counted=kind == "note" and not reconciled)
    log.info("turn %d posted as %s %s%s", turn.id,
             "fallback" if row.outcome == "fallback" else kind, posted_id,
             " (found from an earlier attempt)" if reconciled else "", extra=turn_fields(row))
    engine.emit("turn_posted", **turn_fields(row), outcome=row.outcome, kind=kind,
                reconciled=reconciled, posted_id=posted_id,
                seconds=(row.posted_at - row.last_message_at).total_seconds())


def turn_fields(turn: Turn) -> dict[str, object]:
    """The identifiers every event and log line about a turn carries."""
    return {"adapter": turn.adapter, "ticket_id": turn.ticket_id, "session_id": turn.session_id,
            "request_id": turn.request_id, "turn_id": turn.id}


def _reload(db: Session, turn: Turn) -> Turn:
    row = db.get(Turn, turn.id)
    if row is None:  # rows are never deleted while the daemon runs
        raise LookupError(f"turn {turn.id} vanished")
    return row


def _ticket_of(db: Session, turn: Turn) -> Ticket:
    record = db.exec(select(TicketRecord).where(
        TicketRecord.adapter == turn.adapter, TicketRecord.external_id == turn.ticket_id
    )).first()
    if record is None:
        return Ticket(external_id=turn.ticket_id, status="", resolved=False)
    return Ticket(external_id=record.external_id, status=record.status, resolved=record.resolved)
