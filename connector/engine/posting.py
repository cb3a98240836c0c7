"""Posting a turn's answer (or the fallback note) on its ticket, exactly once.

``posting`` is recorded before the call; a step that finds the turn already ``posting`` looks
for the note by its marker first, because an earlier attempt may have posted without recording
it. A post that must happen is never given up on a transient error: it waits and looks again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.base import Ticket
from connector.core.errors import RemoteError, TransportError
from connector.engine import bounds, render
from connector.engine.conversation import cancelled
from connector.engine.ingest import AUTH_PAUSE, handle_adapter_error
from connector.engine.outcomes import Action, Step, disposition
from connector.engine.turn_records import fence, released, save, turn_fields, wait_out
from connector.store.models import Turn, TurnState, utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime
    from connector.engine.turns import Situation

log = logging.getLogger("connector.engine.turns")


def post(engine: Runtime, turn: Turn, seen: Situation, *, fresh: bool = False) -> None:
    """Post the draft once. ``fresh``: this step itself just moved the turn to ``posting``, so
    no earlier attempt can have posted it and there is nothing to look for first."""
    adapter = engine.adapters.get(turn.adapter)
    if adapter is None:  # the adapter was removed from the config
        engine.release_claim(turn.id, delay=300)
        return
    text = text_for(engine, turn)
    if text is None:
        save(engine, turn, cancelled(turn.reason or "low confidence and no fallback configured"))
        return
    try:
        if turn.state == TurnState.POSTING and not fresh:
            if not fence(engine, turn):
                return
            # An earlier attempt may have posted before it could record it: look first.
            ticket = Ticket(external_id=turn.ticket_id, status=seen.status,
                            resolved=seen.resolved)
            found = adapter.find_posted(ticket, render.marker(turn.marker_ref))
            if found is not None:
                _mark_posted(engine, turn, found, reconciled=True)
                return
            if ticket.resolved:  # resolved while our first attempt was unconfirmed
                save(engine, turn, cancelled(f"ticket {ticket.status or 'resolved'}"))
                return
        elif turn.state != TurnState.POSTING and not save(engine, turn, {
                "state": TurnState.POSTING, "claim_until": utcnow() + engine.lease_ttl}):
            return  # the fence: no longer ours
        posted = adapter.post_draft(turn.ticket_id, text)
    except RemoteError as exc:
        action = disposition(exc, Step.POST)
        if action is Action.GONE:
            save(engine, turn, cancelled(f"ticket no longer available ({type(exc).__name__})"))
            return
        if isinstance(exc, TransportError) and exc.sent:
            # The helpdesk may still be writing it: look for it only once it surely finished.
            exc.retry_after = max(exc.retry_after or 0.0, adapter.settings.timeout)
        if action is Action.PAUSE:
            handle_adapter_error(engine, turn.adapter, exc, f"posting on {turn.ticket_id}")
            exc.retry_after = max(exc.retry_after or 0.0, AUTH_PAUSE)
        if action in (Action.WAIT, Action.PAUSE):
            # A post must happen (or the ticket end): no number of failures gives it up, and
            # the next attempt looks for this one's note first.
            wait_out(engine, turn, exc)
        else:
            save(engine, turn, {"state": TurnState.FAILED,
                                 "reason": f"the helpdesk refused the post: {exc}"[:500],
                                 **released()})
            log.error("turn %d: post refused: %s", turn.id, exc, extra=turn_fields(turn))
        return
    _mark_posted(engine, turn, posted.external_id, kind=posted.kind)


def text_for(engine: Runtime, turn: Turn) -> str | None:
    ref = turn.marker_ref
    if turn.outcome == "fallback" or turn.answer is None:
        return render.render_fallback(engine.config.draft, ref)
    return render.render_answer(engine.config.draft, ref, turn.answer, turn.confidence_level,
                                turn.confidence_score)


def _mark_posted(
    engine: Runtime, turn: Turn, posted_id: str, *, kind: str = "note", reconciled: bool = False
) -> None:
    save(engine, turn, {"state": TurnState.POSTED, "posted_id": bounds.stored_id(posted_id),
                         "posted_at": utcnow(), **released()},
         post_counted=kind == "note" and not reconciled)
    log.info("turn %d posted as %s %s (confidence %s)%s", turn.id,
             "fallback" if turn.outcome == "fallback" else kind, posted_id,
             turn.confidence_level or "n/a",
             " (found from an earlier attempt)" if reconciled else "", extra=turn_fields(turn))
    assert turn.posted_at is not None
    engine.emit("turn_posted", **turn_fields(turn), outcome=turn.outcome, kind=kind,
                reconciled=reconciled, posted_id=posted_id,
                seconds=(turn.posted_at - turn.last_message_at).total_seconds())
