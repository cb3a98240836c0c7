"""The turn state machine: ask Uppzy, wait for the answer, post it once.

Each step starts from the row as claimed, checks the rest of the ticket in one read, makes at
most one remote call (two when a post must first look for a previous attempt's marker), and writes
its outcome with one UPDATE in a short transaction. Waiting is a ``next_attempt_at`` on
the row, never a sleeping worker. A turn whose ticket was resolved, superseded by a newer
customer message, or answered by an agent meanwhile ends cancelled, with the reason kept.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, TextClause, bindparam, text, update
from sqlmodel import Session, select

from adapters.base import Ticket
from connector.engine import render, replies, sessions
from connector.engine.ingest import cancelled, handle_adapter_error, note_own_post
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
from connector.store.db import read_scope, session_scope, write_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    ChatSession,
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


def claim_turns(
    engine: Engine, db: Session, limit: int, *, queued: bool | None = None
) -> list[Turn]:
    """Lease due turns to this instance; the heartbeat keeps the lease while a step runs."""
    return claims.claim_turns(db, engine.instance_id, utcnow(), engine.lease_ttl, limit,
                              queued=queued)


@dataclass(frozen=True)
class Situation:
    """What the rest of the ticket says about a turn, read in one statement before its step."""

    resolved: bool
    status: str
    newer: bool  # a later turn exists on the ticket
    agent_replied: bool  # a human's public reply came after the turn's last customer message
    session_busy: bool  # another request of its session is in flight, or queued before it
    at: float = field(default_factory=time.monotonic)  # when it was read


def advance(engine: Engine, turn: Turn) -> None:
    """Run the one step the claimed turn is due for; every outcome also releases the claim."""
    if turn.state not in ACTIVE_TURN_STATES:
        return
    shadow = engine.config.shadow(engine.config.adapter(turn.adapter))
    seen = _situation(engine, turn)
    blocked = _why_not_now(turn, seen, shadow)
    if blocked is not None:
        _save(engine, turn, cancelled(blocked))
        log.info("turn %d cancelled: %s", turn.id, blocked, extra=turn_fields(turn))
        return
    if turn.state == TurnState.QUEUED and seen.session_busy:
        _save(engine, turn, _released(min(1.0, engine.config.uppzy.poll_interval)))
        return
    if turn.state == TurnState.QUEUED:
        if engine.config.uppzy.mode == "sync":
            _ask_sync(engine, turn, shadow)
        else:
            _submit(engine, turn)
    elif turn.state == TurnState.SUBMITTED:
        _poll(engine, turn, seen, shadow)
    elif shadow:
        _shadow(engine, turn)
    else:
        _post(engine, turn, seen)


# Plain SQL on purpose: built with the expression language, this one statement cost more CPU
# (statement construction and cache-key generation on every call) than the rest of the step.
_SITUATION = text("""
SELECT
  (SELECT t.resolved FROM ticket t WHERE t.adapter = :adapter AND t.external_id = :ticket),
  (SELECT t.status FROM ticket t WHERE t.adapter = :adapter AND t.external_id = :ticket),
  EXISTS (SELECT 1 FROM turn n WHERE n.adapter = :adapter AND n.ticket_id = :ticket
          AND n.id > :turn),
  EXISTS (SELECT 1 FROM message m WHERE m.adapter = :adapter AND m.ticket_id = :ticket
          AND m.role = 'agent' AND m.public AND NOT m.ours
          AND m.id > COALESCE((SELECT q.id FROM message q WHERE q.adapter = :adapter
                               AND q.external_id = :asked), 0)),
  EXISTS (SELECT 1 FROM turn o WHERE o.session_id = :session AND o.id <> :turn
          AND (o.state = :submitted OR (o.state = :queued AND o.id < :turn)))
""")


def _situation(engine: Engine, turn: Turn) -> Situation:
    with read_scope(engine.db) as db:
        resolved, status, newer, agent, busy = db.execute(_SITUATION, {
            "adapter": turn.adapter, "ticket": turn.ticket_id, "turn": turn.id,
            "asked": turn.last_message_id, "session": turn.session_id,
            "submitted": TurnState.SUBMITTED.value, "queued": TurnState.QUEUED.value,
        }).one()
    return Situation(bool(resolved), status or "", bool(newer), bool(agent), bool(busy))


def _why_not_now(turn: Turn, seen: Situation, shadow: bool) -> str | None:
    """The reason this turn must not be answered any more, if there is one.

    A turn already asked keeps polling even when superseded (its session must stay with one
    request in flight); it is dropped when its answer is ready. In shadow mode an agent's reply
    is what the answer is compared with, so it cancels nothing. A turn being posted is left to
    the post step, which first looks for an earlier attempt's note.
    """
    if seen.resolved and turn.state != TurnState.POSTING:
        return f"ticket {seen.status or 'resolved'}"
    if turn.state in (TurnState.SUBMITTED, TurnState.POSTING):
        return None
    if seen.newer:
        return "superseded by a newer customer message"
    if not shadow and seen.agent_replied:
        return "answered by an agent"
    return None


def _save(
    engine: Engine, turn: Turn, values: dict[str, Any], *, touch_session_at: datetime | None = None,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """Write a step's outcome in one short transaction and mirror it on the claimed row.

    Only the columns the step decided are written: ingest may meanwhile have marked the row
    superseded or cancelled it, and the next step's check sees that.
    """
    with write_scope(engine.db) as db:
        _write_turn(db, turn, values)
        if touch_session_at is not None:
            db.execute(update(ChatSession).where(ChatSession.session_id == turn.session_id)
                       .values(last_customer_at=touch_session_at))
        if also is not None:
            also(db)


def _write_turn(db: Connection | Session, turn: Turn, values: dict[str, Any]) -> None:
    """Write ``values`` to the turn's row in the caller's transaction; mirror them on ``turn``."""
    db.execute(_update_turn(frozenset(values)), {**values, "turn_id": turn.id})
    for key, value in values.items():
        setattr(turn, key, value)


@functools.cache
def _update_turn(columns: frozenset[str]) -> TextClause:
    """``UPDATE turn SET <columns> WHERE id = :turn_id``, built once per set of columns.

    Typed bind parameters keep the columns' own conversions (datetimes stored as SQLite text,
    enums as their values); an expression-language UPDATE rebuilt on every step cost several
    times the statement itself.
    """
    table = Turn.__table__  # type: ignore[attr-defined]
    names = sorted(columns)
    statement = text(f"UPDATE turn SET {', '.join(f'{c} = :{c}' for c in names)} "
                     "WHERE id = :turn_id")
    return statement.bindparams(*(bindparam(c, type_=table.c[c].type) for c in names))


def _released(delay: float = 0.0) -> dict[str, Any]:
    now = utcnow()
    return {"claim_owner": None, "claim_until": None,
            "next_attempt_at": now + timedelta(seconds=delay), "updated_at": now}


def _shadow(engine: Engine, turn: Turn) -> None:
    """Shadow mode: keep the answer for comparison with what the agent sends; post nothing."""
    values = {"state": TurnState.SHADOWED, **_released()}
    with session_scope(engine.db) as db:
        _write_turn(db, turn, values)
        replies.compare_shadowed(db, turn.adapter, turn.ticket_id)
    log.info("turn %d answered in shadow mode (not posted)", turn.id, extra=turn_fields(turn))
    engine.emit("turn_shadowed", **turn_fields(turn))


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
    _save(engine, turn, {
        "state": TurnState.SUBMITTED, "request_id": request_id, "submitted_at": now,
        "attempts": 0, "polls": 0,
        **_released(engine.estimator.first_poll_delay(turn.site_id)),
    }, touch_session_at=now)
    log.info("turn %d asked Uppzy", turn.id, extra=turn_fields(turn))
    engine.emit("turn_submitted", **turn_fields(turn))
    log.debug("turn %d question: %s", turn.id, turn.question, extra=turn_fields(turn))


def _ask_sync(engine: Engine, turn: Turn, shadow: bool) -> None:
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
    _store_answer(engine, turn, answer, {"submitted_at": started}, None, shadow,
                  touch_session_at=started)


def _poll(engine: Engine, turn: Turn, seen: Situation, shadow: bool) -> None:
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
    polls = {"polls": turn.polls + 1}
    waited = (now - (turn.submitted_at or now)).total_seconds()
    if status.done and status.answer is not None:
        engine.estimator.observe(turn.site_id, waited)
        _store_answer(engine, turn, status.answer, polls, seen, shadow)
    elif status.failed:
        _give_up(engine, turn, f"Uppzy could not answer: {status.error}", polls)
    elif waited >= engine.config.uppzy.answer_timeout:
        _give_up(engine, turn, "no answer within answer_timeout", polls)
    else:
        remaining = engine.config.uppzy.answer_timeout - waited
        delay = engine.estimator.next_poll_delay(polls["polls"],
                                                 engine.config.uppzy.poll_interval)
        _save(engine, turn, {**polls, **_released(max(0.05, min(delay, remaining)))})


def _store_answer(
    engine: Engine, turn: Turn, answer: ChatAnswer, values: dict[str, Any],
    seen: Situation | None, shadow: bool, *, touch_session_at: datetime | None = None,
) -> None:
    """Keep the answer and, when nothing stands in the way, post it in the same step.

    Going straight on saves a claim, a check and a write per answer, and the wait for the next
    dispatch. The answer is then recorded together with ``posting`` in one transaction, before
    the post, so a crash in between is reconciled by the marker as for any post. ``seen`` is the
    check made before the Uppzy call; when that call waited (sync chat), it is made again.
    """
    low = render.below_threshold(engine.config.draft, answer.confidence_level,
                                 answer.confidence_score)
    answered_at = utcnow()
    values = {
        **values, "request_id": answer.request_id or turn.request_id, "answer": answer.answer,
        "confidence_level": answer.confidence_level,
        "confidence_score": answer.confidence_score, "answered_at": answered_at,
        "state": TurnState.ANSWERED, "attempts": 0, "outcome": "fallback" if low else "draft",
        **({"reason": "answer below min_confidence"} if low else {}),
    }
    for key, value in values.items():  # the draft renders from the turn
        setattr(turn, key, value)
    go_on = not shadow and turn.adapter in engine.adapters and \
        _text_for(engine, turn) is not None
    if go_on:
        if seen is None or time.monotonic() - seen.at > 1.0:
            seen = _situation(engine, turn)
        go_on = _why_not_now(turn, seen, shadow) is None
    if go_on:
        values.update(state=TurnState.POSTING, updated_at=utcnow())  # the claim stays ours
    else:
        values.update(_released())
    _save(engine, turn, values, touch_session_at=touch_session_at)
    log.info("turn %d answered (confidence %s)", turn.id, answer.confidence_level or "n/a",
             extra=turn_fields(turn))
    submitted = turn.submitted_at or answered_at
    engine.emit("turn_answered", **turn_fields(turn), polls=turn.polls, low_confidence=low,
                seconds=(answered_at - submitted).total_seconds(),
                confidence_level=answer.confidence_level)
    if go_on:
        assert seen is not None
        _post(engine, turn, seen, fresh=True)


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
    attempts = turn.attempts + 1
    with session_scope(engine.db) as db:
        chat = db.get(sessions.ChatSession, turn.session_id)
        if chat is not None and chat.state == "open":
            chat.state = "closed"
            chat.closed_at = utcnow()
            chat.reason = f"refused by Uppzy: {exc.detail or exc.status}"
            db.add(chat)
        if attempts < engine.config.engine.max_attempts:
            ticket = db.exec(select(TicketRecord).where(
                TicketRecord.adapter == turn.adapter, TicketRecord.external_id == turn.ticket_id
            )).one()
            session_id = sessions.open_session_id(
                db, turn.adapter, ticket, engine.config.session, turn.site_id
            )
            _write_turn(db, turn, {"attempts": attempts, "session_id": session_id,
                                   **_released()})
    if attempts >= engine.config.engine.max_attempts:
        _give_up(engine, turn, f"Uppzy refused every session: {exc}", {"attempts": attempts})
        return
    log.warning("turn %d: session refused by Uppzy (%s); continuing in %s", turn.id,
                exc.status, turn.session_id, extra=turn_fields(turn))


def _retry_later(engine: Engine, turn: Turn, exc: RemoteError) -> None:
    attempts = turn.attempts + 1
    if attempts >= engine.config.engine.max_attempts:
        _give_up(engine, turn, f"gave up after {attempts} attempts: {exc}",
                 {"attempts": attempts})
        return
    delay = max(exc.retry_after or 0.0, engine.backoff(attempts))
    _save(engine, turn, {"attempts": attempts, "reason": f"retrying: {exc}"[:500],
                         **_released(delay)})
    level = logging.INFO if isinstance(exc, RateLimited) else logging.WARNING
    log.log(level, "turn %d: %s; retry %d in %.1fs", turn.id, exc, attempts, delay,
            extra=turn_fields(turn))


def _give_up(
    engine: Engine, turn: Turn, reason: str, values: dict[str, Any] | None = None
) -> None:
    """No answer will come: post the fallback note if the team wants one, else fail visibly."""
    fallback = render.render_fallback(engine.config.draft, turn.marker_ref)
    outcome: dict[str, Any] = {"state": TurnState.FAILED} if fallback is None else \
        {"state": TurnState.ANSWERED, "outcome": "fallback", "attempts": 0}
    _save(engine, turn, {**(values or {}), "reason": reason[:500], **outcome, **_released()})
    log.warning("turn %d failed: %s%s", turn.id, reason,
                "" if fallback is None else "; posting the fallback note", extra=turn_fields(turn))
    engine.emit("turn_failed", **turn_fields(turn), reason=reason, fallback=fallback is not None)


# ----- posting ------------------------------------------------------------------------------
def _post(engine: Engine, turn: Turn, seen: Situation, *, fresh: bool = False) -> None:
    """Post the draft once. ``fresh``: this step itself just moved the turn to ``posting``, so
    no earlier attempt can have posted it and there is nothing to look for first."""
    adapter = engine.adapters.get(turn.adapter)
    if adapter is None:  # the adapter was removed from the config
        engine.release_claim(turn.id, delay=300)
        return
    text = _text_for(engine, turn)
    if text is None:
        _save(engine, turn, cancelled(turn.reason or "low confidence and no fallback configured"))
        return
    try:
        if turn.state == TurnState.POSTING and not fresh:
            # An earlier attempt may have posted before it could record it: look first.
            ticket = Ticket(external_id=turn.ticket_id, status=seen.status,
                            resolved=seen.resolved)
            found = adapter.find_posted(ticket, render.marker(turn.marker_ref))
            if found is not None:
                _mark_posted(engine, turn, found, reconciled=True)
                return
            if ticket.resolved:  # resolved while our first attempt was unconfirmed
                _save(engine, turn, cancelled(f"ticket {ticket.status or 'resolved'}"))
                return
        elif turn.state != TurnState.POSTING:
            _save(engine, turn, {"state": TurnState.POSTING})
        posted = adapter.post_draft(turn.ticket_id, text)
    except (NotFound, Moved) as exc:
        _save(engine, turn, cancelled(f"ticket no longer available ({type(exc).__name__})"))
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
            _save(engine, turn, {"state": TurnState.FAILED,
                                 "reason": f"the helpdesk refused the post: {exc}"[:500],
                                 **_released()})
            log.error("turn %d: post refused: %s", turn.id, exc, extra=turn_fields(turn))
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
    _save(engine, turn, {"state": TurnState.POSTED, "posted_id": posted_id,
                         "posted_at": utcnow(), **_released()},
          also=lambda db: note_own_post(db, turn.adapter, turn.ticket_id,
                                        counted=kind == "note" and not reconciled))
    log.info("turn %d posted as %s %s%s", turn.id,
             "fallback" if turn.outcome == "fallback" else kind, posted_id,
             " (found from an earlier attempt)" if reconciled else "", extra=turn_fields(turn))
    assert turn.posted_at is not None
    engine.emit("turn_posted", **turn_fields(turn), outcome=turn.outcome, kind=kind,
                reconciled=reconciled, posted_id=posted_id,
                seconds=(turn.posted_at - turn.last_message_at).total_seconds())


def turn_fields(turn: Turn) -> dict[str, object]:
    """The identifiers every event and log line about a turn carries."""
    return {"adapter": turn.adapter, "ticket_id": turn.ticket_id, "session_id": turn.session_id,
            "request_id": turn.request_id, "turn_id": turn.id}
