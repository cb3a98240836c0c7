"""The turn state machine: ask Uppzy, wait for the answer, post it once.

Each step starts from the row as claimed, checks the rest of the ticket in one read (a new turn
handed on by the read that made it starts from that read's view instead), makes at most one
remote call (two when a post must first look for a previous attempt's marker), and writes
its outcome with one UPDATE in a short transaction. Waiting is a ``next_attempt_at`` on
the row, never a sleeping worker. A turn whose ticket was resolved, superseded by a newer
customer message, or answered by an agent meanwhile ends cancelled, with the reason kept.

Every write of a step is conditional on this instance still holding the claim, and a remote
side effect (asking, posting) comes only after such a write succeeded (the fence): an instance
that stood still past its lease finds the turn taken over and drops what it was doing.

Transient errors (5xx, 429, transport failures, malformed bodies) never end a turn: it waits,
with a backoff capped at ``engine.max_backoff``, for the remote side to come back. Only a
definitive answer ends it: Uppzy could not answer, gave no answer within ``answer_timeout`` of
being asked (counted on status reads that succeeded), or refused the question; the helpdesk
refused the post.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from connector.core.errors import (
    RemoteError,
    TransportError,
)
from connector.engine import render, replies, sessions
from connector.engine.conversation import cancelled
from connector.engine.outcomes import Action, Step, disposition
from connector.engine.posting import post, text_for
from connector.engine.turn_records import (
    fence,
    released,
    save,
    turn_fields,
    wait_out,
)
from connector.store import messages, tickets
from connector.store import sessions as session_rows
from connector.store import turns as store
from connector.store.models import (
    ACTIVE_TURN_STATES,
    Turn,
    TurnState,
    utcnow,
)
from connector.uppzy import ChatAnswer

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)


FRESH = 1.0  # seconds for which a step may act on the ticket as last seen


@dataclass(frozen=True)
class Situation:
    """What the rest of the ticket says about a turn, read in one statement before its step."""

    resolved: bool
    status: str
    newer: bool  # a later turn exists on the ticket
    agent_replied: bool  # a human's public reply came after the turn's last customer message
    session_busy: bool  # another request of its session is in flight, or queued before it
    at: float = field(default_factory=time.monotonic)  # when it was read


class Handed(NamedTuple):
    """A turn created claimed by this instance's read, with what that read saw of its ticket."""

    turn: Turn
    seen: Situation

    @property
    def id(self) -> int | None:
        return self.turn.id


def advance_handed(engine: Runtime, handed: Handed) -> None:
    """The first step of a turn handed on by the read that made it (``Runtime.hand_on``)."""
    advance(engine, handed.turn, handed.seen)


def advance(engine: Runtime, turn: Turn, seen: Situation | None = None) -> None:
    """Run the one step the claimed turn is due for; every outcome also releases the claim.
    ``seen``: the ticket as a read saw it; read again when older than ``FRESH``."""
    if turn.state not in ACTIVE_TURN_STATES:
        return
    shadow = engine.config.shadow(engine.config.adapter(turn.adapter))
    seen = _fresh(engine, turn, seen)
    blocked = _why_not_now(turn, seen, shadow)
    if blocked is not None:
        save(engine, turn, cancelled(blocked))
        log.info("turn %d cancelled: %s", turn.id, blocked, extra=turn_fields(turn))
        return
    if turn.state == TurnState.QUEUED and seen.session_busy:
        save(engine, turn, released(min(1.0, engine.config.uppzy.poll_interval)))
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
        post(engine, turn, seen)


def _situation(engine: Runtime, turn: Turn) -> Situation:
    return Situation(*store.surroundings(engine.db, turn))


def _fresh(engine: Runtime, turn: Turn, seen: Situation | None) -> Situation:
    """``seen`` if it was read less than ``FRESH`` ago, else the ticket read now. Acting on a
    view a moment old is the same bet the step makes between its check and its remote call:
    what changes in that moment (a newer message, the ticket resolved) is caught by the next
    step's check, at the cost of a question asked for nothing, never of a draft too many."""
    if seen is None or time.monotonic() - seen.at > FRESH:
        return _situation(engine, turn)
    return seen


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


def _shadow(engine: Runtime, turn: Turn) -> None:
    """Shadow mode: keep the answer for comparison with what the agent sends; post nothing."""
    scores = replies.similarities(messages.awaiting_comparison(engine.db, turn))
    if not save(engine, turn, {"state": TurnState.SHADOWED, **released()}, similarities=scores):
        return
    log.info("turn %d answered in shadow mode (not posted)", turn.id, extra=turn_fields(turn))
    engine.emit("turn_shadowed", **turn_fields(turn))


# ----- asking -------------------------------------------------------------------------------
def _asking(engine: Runtime, turn: Turn) -> bool:
    """The fence before a question goes to Uppzy. It stamps ``submitted_at`` on the row while
    the turn is still queued: a queued turn found with the stamp was maybe asked already by a
    step that never recorded the answer (killed, or the reply lost). Uppzy has no idempotency
    key, so that question is asked again, and the repeat is counted."""
    if turn.submitted_at is not None:
        log.info("turn %d: asking again (an earlier attempt may have reached Uppzy)", turn.id,
                 extra=turn_fields(turn))
        engine.emit("side_effect_repeated", kind="chat", **turn_fields(turn))
    return fence(engine, turn, submitted_at=utcnow())


def _submit(engine: Runtime, turn: Turn) -> None:
    if not _asking(engine, turn):
        return
    try:
        request_id = engine.uppzy.submit(
            turn.site_id, turn.session_id, turn.question,
            response_language=engine.config.uppzy.response_language,
        )
    except RemoteError as exc:
        _chat_error(engine, turn, exc, Step.ASK)
        return
    engine.note_uppzy_ok()
    now = utcnow()
    save(engine, turn, {
        "state": TurnState.SUBMITTED, "request_id": request_id, "submitted_at": now,
        "attempts": 0, "polls": 0,
        **released(engine.estimator.first_poll_delay(
            turn.site_id, engine.config.uppzy.answer_timeout / 2)),
    }, touch_session_at=now)
    log.debug("turn %d asked Uppzy", turn.id, extra=turn_fields(turn))
    engine.emit("turn_submitted", **turn_fields(turn))
    log.debug("turn %d question: %s", turn.id, turn.question, extra=turn_fields(turn))


def _ask_sync(engine: Runtime, turn: Turn, shadow: bool) -> None:
    if not _asking(engine, turn):
        return
    started = utcnow()
    try:
        with engine.sync_slots.waiting() if engine.sync_slots else nullcontext():
            answer = engine.uppzy.chat(
                turn.site_id, turn.session_id, turn.question,
                response_language=engine.config.uppzy.response_language,
            )
    except RemoteError as exc:
        _chat_error(engine, turn, exc, Step.CHAT)
        return
    engine.note_uppzy_ok()
    _store_answer(engine, turn, answer, {"submitted_at": started}, None, shadow,
                  touch_session_at=started)


def _poll(engine: Runtime, turn: Turn, seen: Situation, shadow: bool) -> None:
    assert turn.request_id is not None
    try:
        status = engine.uppzy.status(turn.site_id, turn.request_id)
    except RemoteError as exc:
        _chat_error(engine, turn, exc, Step.ANSWER)
        return
    engine.note_uppzy_ok()
    now = utcnow()
    polls = {"polls": turn.polls + 1}
    waited = (now - (turn.submitted_at or now)).total_seconds()
    if status.done and status.answer is not None:
        if turn.attempts == 0:
            # Only requests whose every status read succeeded say how long answers take: one
            # that waited out an outage would teach the estimator the outage's length.
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
        save(engine, turn, {**polls, **released(max(0.05, min(delay, remaining)))})


def _store_answer(
    engine: Runtime, turn: Turn, answer: ChatAnswer, values: dict[str, Any],
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
    store.mirror(turn, values)  # the draft renders from the turn
    go_on = not shadow and turn.adapter in engine.adapters and \
        text_for(engine, turn) is not None
    if go_on:
        seen = _fresh(engine, turn, seen)
        go_on = _why_not_now(turn, seen, shadow) is None
    if go_on:
        values.update(state=TurnState.POSTING, updated_at=utcnow())  # the claim stays ours
    else:
        values.update(released())
    save(engine, turn, values, touch_session_at=touch_session_at)
    # Posted in this step: the "posted" line says it all (INFO lines are per ticket event,
    # not per step: four a message cost a tenth of a burst's CPU, bench/README.md).
    log.log(logging.DEBUG if go_on else logging.INFO, "turn %d answered (confidence %s)",
            turn.id, answer.confidence_level or "n/a", extra=turn_fields(turn))
    submitted = turn.submitted_at or answered_at
    engine.emit("turn_answered", **turn_fields(turn), polls=turn.polls, low_confidence=low,
                seconds=(answered_at - submitted).total_seconds(),
                confidence_level=answer.confidence_level)
    if go_on:
        assert seen is not None
        post(engine, turn, seen, fresh=True)


def _ask_again(engine: Runtime, turn: Turn) -> None:
    """Uppzy no longer knows the request (lost in an outage, or expired while it was down):
    the question goes back to the queue rather than ending as a fallback. Bounded by
    ``engine.max_attempts``, since a request Uppzy keeps forgetting will not be answered."""
    attempts = turn.attempts + 1
    if attempts >= engine.config.engine.max_attempts:
        _give_up(engine, turn, "Uppzy no longer knows the request", {"attempts": attempts})
        return
    log.warning("turn %d: Uppzy no longer knows request %s; asking again", turn.id,
                turn.request_id, extra=turn_fields(turn))
    save(engine, turn, {"state": TurnState.QUEUED, "request_id": None, "polls": 0,
                         "attempts": attempts, "reason": "Uppzy forgot the request; asked again",
                         **released()})


def _chat_error(engine: Runtime, turn: Turn, exc: RemoteError, step: Step) -> None:
    """Carry out what the outcome table says an Uppzy error means for this turn."""
    action = disposition(exc, step)
    if action is Action.STOP:
        engine.release_claim(turn.id)
        engine.check_uppzy_access(exc, site=turn.site_id)
    elif action is Action.NEXT_SESSION:
        _move_to_next_session(engine, turn, exc)
    elif action is Action.ASK_AGAIN:
        _ask_again(engine, turn)
    elif action is Action.WAIT:
        engine.note_uppzy_failure(exc)
        wait_out(engine, turn, exc)
    elif isinstance(exc, TransportError) and exc.timed_out:
        _give_up(engine, turn, "no answer from Uppzy within the read timeout")
    else:
        _give_up(engine, turn, f"Uppzy rejected the request: {exc}")


def _move_to_next_session(engine: Runtime, turn: Turn, exc: RemoteError) -> None:
    """Uppzy says the session cannot take the message (closed elsewhere): use the next id."""
    attempts = turn.attempts + 1
    slot = None
    if attempts < engine.config.engine.max_attempts:
        ticket = tickets.rows(engine.db, turn.adapter, [turn.ticket_id])[turn.ticket_id]
        slot = sessions.slot(turn.adapter, ticket, engine.config.session, turn.site_id)
    session_rows.move_turn(engine.db, turn, engine.instance_id,
                           f"refused by Uppzy: {exc.detail or exc.status}", utcnow(), slot,
                           {"attempts": attempts, **released()})
    if attempts >= engine.config.engine.max_attempts:
        _give_up(engine, turn, f"Uppzy refused every session: {exc}", {"attempts": attempts})
        return
    log.warning("turn %d: session refused by Uppzy (%s); continuing in %s", turn.id,
                exc.status, turn.session_id, extra=turn_fields(turn))


def _give_up(
    engine: Runtime, turn: Turn, reason: str, values: dict[str, Any] | None = None
) -> None:
    """No answer will come: post the fallback note if the team wants one, else fail visibly."""
    fallback = render.render_fallback(engine.config.draft, turn.marker_ref)
    outcome: dict[str, Any] = {"state": TurnState.FAILED} if fallback is None else \
        {"state": TurnState.ANSWERED, "outcome": "fallback", "attempts": 0}
    save(engine, turn, {**(values or {}), "reason": reason[:500], **outcome, **released()})
    log.warning("turn %d failed: %s%s", turn.id, reason,
                "" if fallback is None else "; posting the fallback note", extra=turn_fields(turn))
    engine.emit("turn_failed", **turn_fields(turn), reason=reason, fallback=fallback is not None)
