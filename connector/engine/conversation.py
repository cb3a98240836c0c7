"""From a changed ticket to turns: read its conversation, store new messages, decide turns.

A read is a retryable step per ticket, claimed through the ticket's ``sync_after``; it covers
the ``change_seq`` it claimed, so a change seen by a poll meanwhile makes the ticket read again.
Public customer messages after the last public agent reply become a turn; agent replies,
internal notes, system events and our own posts never do.

After the helpdesk answered, the store is visited twice: a read-only snapshot of what it knows
of the ticket (``store.conversation.read``), then one transaction that writes what ``plan``
decided from it (``record_read``). The decisions are made outside any transaction, so none of
them holds SQLite's write lock; what may have changed in between is checked again by the
writes (see ``store.conversation``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.base import Message, Role, Ticket
from connector.core.errors import (
    RateLimited,
    RemoteError,
)
from connector.engine import bounds, replies, sessions, verdicts
from connector.engine.ingest import handle_adapter_error
from connector.engine.outcomes import Action, Step, disposition
from connector.engine.render import own_post
from connector.store import conversation as store
from connector.store import tickets
from connector.store.conversation import Applied, Changes, Ending, NewTurn, Snapshot
from connector.store.db import StoreError
from connector.store.messages import NewMessage
from connector.store.models import ACTIVE_TURN_STATES, TicketRecord, TurnState, utcnow
from connector.store.turns import Cancel

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

COUNT_PROOFS = 2  # tickets whose reads must show that the helpdesk counts private messages
# A turn being posted is left to the post step, which first looks for an earlier attempt's
# note: every other active turn ends with its ticket.
ENDABLE = tuple(s for s in ACTIVE_TURN_STATES if s != TurnState.POSTING)


def sync_ticket(engine: Runtime, claimed: TicketRecord) -> None:
    """Read one claimed ticket's conversation and turn new customer messages into work."""
    seq = claimed.change_seq
    assert claimed.id is not None
    name, ticket_id = claimed.adapter, claimed.external_id
    adapter = engine.adapters[name]
    try:
        ticket = adapter.get_ticket(ticket_id) if claimed.remote_updated_at is None and \
            not claimed.status else None
        messages = adapter.list_messages(ticket or _as_ticket(claimed))
    except RemoteError as exc:
        action = disposition(exc, Step.READ)
        if action is Action.GONE:
            # The adapter's own poll still works (a broken token fails there and pauses the
            # adapter), so a 404/301/403 on this one ticket means it is gone or out of sight.
            log.info("ticket %s/%s is gone (%s); ending its work", name, ticket_id,
                     type(exc).__name__)
            _finish_gone(engine, claimed, seq,
                         f"ticket no longer available: {type(exc).__name__}")
            return
        if action is Action.PAUSE or isinstance(exc, RateLimited):
            handle_adapter_error(engine, name, exc, f"reading ticket {ticket_id}")
        _sync_failed(engine, claimed, exc)
        return
    try:
        _store_read(engine, claimed, ticket, [bounds.message(m) for m in messages])
    except StoreError as exc:
        # Stored nothing of this read (rolled back): read it again later, with the error shown.
        _sync_failed(engine, claimed, exc)


def _store_read(engine: Runtime, claimed: TicketRecord, ticket: Ticket | None,
                messages: list[Message]) -> None:
    name = claimed.adapter
    seen = store.read(engine.db, name, claimed.external_id, [m.external_id for m in messages],
                      epoch=name not in engine.epochs,
                      shadow=engine.config.shadow(engine.config.adapter(name)))
    record = seen.ticket
    if record is None or claimed.id is None:
        return
    values: dict[str, Any] = {}
    if ticket is not None:
        values = {"status": bounds.label(ticket.status) or "", "resolved": ticket.resolved,
                  "tags": " ".join(sorted(ticket.tags)),
                  "requester_key": engine.requester_key(ticket.requester_email,
                                                        ticket.requester_id)}
        for key, value in values.items():
            setattr(record, key, value)
    changes = plan(engine, record, messages, seen, claim=engine.new_turn_claim())
    values.update(sync_after=changes.now, sync_attempts=0, sync_error=None,
                  synced_at=changes.now, known_messages=_count_read(
                      engine, record, messages, claimed.change_seq, posting=seen.posting))
    applied = store.record_read(engine.writer, claimed.id, claimed.change_seq, values, changes)
    if applied is not None:
        if changes.turn is not None and engine.sync_slots is not None:
            engine.sync_slots.arrived(1)
        announce(engine, record, applied)
        if applied.turn is not None and applied.turn.claimed is not None:
            engine.hand_on(applied.turn.claimed, record.status, applied.turn.session_busy)


def _count_read(engine: Runtime, record: TicketRecord, messages: list[Message], seq: int, *,
                posting: bool) -> int | None:
    """After a read: calibrate the adapter's count; how many messages we now know of.

    Calibration: nobody documents whether Zendesk's ``comment_count`` includes private comments,
    and if it did not, trusting it would lose messages (see ``ingest._mark_changed``). A read
    settles it: a count that covers public messages only is smaller than the total whenever one
    of them is private, and messages only ever get added, so a reported count (taken before this
    read) equal to everything read, private messages among it, can only come from a count of
    every message. Until reads of ``COUNT_PROOFS`` tickets show that, every report is read as
    before.

    The count stays unknown (None) while one of our posts on the ticket is under way
    (``posting``, seen after the helpdesk answered): this read may or may not contain it, and
    the +1 that recording the post adds (``store.tickets.count_own_post``) would then count it
    twice. Adapters that report no count skip all this.
    """
    if record.reported_messages is None:
        return None
    if record.adapter not in engine.counts_private and record.change_seq == seq and \
            record.reported_messages == len(messages) and not all(m.public for m in messages):
        # Two tickets must agree: one odd read (a comment the adapter dropped as malformed can
        # make a public-only count equal what was read) must not be enough to trust a count.
        proofs = engine.count_proofs.setdefault(record.adapter, set())
        proofs.add(record.external_id)
        if len(proofs) >= COUNT_PROOFS:
            engine.counts_private.add(record.adapter)
            log.info("adapter %s: its message counts include private messages; a ticket whose "
                     "count is unchanged is no longer re-read", record.adapter)
    return None if posting else len(messages)


def _as_ticket(record: TicketRecord) -> Ticket:
    return Ticket(external_id=record.external_id, status=record.status, resolved=record.resolved)


def _sync_failed(engine: Runtime, claimed: TicketRecord, exc: RemoteError | StoreError) -> None:
    """A read that failed is read again later, however often it fails: the cursor has moved
    past the ticket, so giving the read up would lose its messages. The error shows in
    ``status`` (``sync_error``) and the log; the wait grows up to ``engine.max_backoff``.
    A 429 waits its ``Retry-After`` without growing the wait: it is the vendor pacing us.
    The count of failures in a row is the claimed row's: nobody else writes it while the
    read's lease holds."""
    assert claimed.id is not None
    retry_after = getattr(exc, "retry_after", None)
    reason = str(exc) if isinstance(exc, RemoteError) else \
        f"database error storing the conversation ({exc.kind})"
    counted = not isinstance(exc, RateLimited)
    attempts = claimed.sync_attempts + counted
    delay = max(retry_after or 0.0, engine.backoff(attempts))
    tickets.read_failed(engine.db, claimed.id, counted=counted, reason=reason[:500],
                        not_before=utcnow() + timedelta(seconds=delay))
    level = logging.ERROR if attempts == engine.config.engine.max_attempts \
        else logging.INFO if isinstance(exc, RateLimited) else logging.WARNING
    log.log(level, "ticket %s/%s: read failed (%d in a row): %s; again in %.0fs",
            claimed.adapter, claimed.external_id, attempts, reason, delay)


def _finish_gone(engine: Runtime, claimed: TicketRecord, seq: int, reason: str) -> None:
    assert claimed.id is not None
    applied = store.finish_gone(engine.db, claimed.id, seq, reason, _ending(engine, reason),
                                utcnow())
    _log_closing(applied)


def plan(engine: Runtime, record: TicketRecord, messages: list[Message], seen: Snapshot, *,
         history_ok: bool = False, claim: tuple[str, datetime] | None = None) -> Changes:
    """Decide what the read means: new messages, a new turn, a cancel, a session close.

    Only public customer messages that came after the last public agent reply, and after the
    adapter's epoch, start work; our own posts (recognised by marker or posted id), agent
    replies, internal notes and system events never do. ``history_ok`` is backfill's: no epoch,
    and messages stored earlier as history (in no turn yet) count as new. ``claim``: a new turn
    is created with it (owner, until), for the reader to hand on (``Runtime.hand_on``).
    """
    name, now = record.adapter, utcnow()
    # Shadow mode answers what agents already answered too: that is the comparison.
    shadow = engine.config.shadow(engine.config.adapter(name))
    epoch = None if history_ok else _epoch(engine, name, seen.epoch)
    rows, new_customer, last_agent = _sort(messages, seen, epoch, shadow=shadow,
                                           history_ok=history_ok)
    merged = {source: _ending(engine, f"merged into ticket {record.external_id}", "merged")
              for source in sorted(seen.elsewhere)}
    judged = verdicts.judge_drafts(engine, seen.drafts, messages, rows, now)
    rating = _rating(engine, record)
    if record.resolved:
        return Changes(name, record.external_id, now, rows, merged, judged, rating=rating,
                       ending=_ending(engine, f"ticket {record.status or 'resolved'}"))
    answered = None
    if last_agent >= 0 and not shadow:
        # The ids of messages before the agent's reply, in conversation order: timestamps
        # have whole seconds, so they cannot order a reply and a question of one second.
        answered = Cancel(cancelled("answered by an agent"),
                          (TurnState.QUEUED, TurnState.ANSWERED),
                          frozenset(m.external_id for m in messages[:last_agent]))
    return Changes(
        name, record.external_id, now, rows, merged, judged, answered=answered, rating=rating,
        similarities=replies.similarities(seen.shadowed, rows) if shadow else {},
        turn=_new_turn(engine, record, new_customer, claim) if new_customer else None,
    )


def _sort(messages: list[Message], seen: Snapshot, epoch: datetime | None, *, shadow: bool,
          history_ok: bool) -> tuple[list[NewMessage], list[Message], int]:
    """The messages to store, the customer's new ones, and the index of the last public
    agent reply (-1: none)."""
    last_agent_index = -1
    new_customer: list[Message] = []
    rows: list[NewMessage] = []
    for index, message in enumerate(messages):
        ours = own_post(message, seen.posted_ids)
        if message.role == Role.AGENT and message.public and not ours:
            last_agent_index = index
            if not shadow:
                new_customer.clear()  # a human answered everything before this
        if message.external_id not in seen.known:
            rows.append(NewMessage(message.external_id, message.role.value, message.public,
                                   ours, message.created_at, message.body))
        elif not history_ok or seen.known[message.external_id] is not None:
            continue
        if message.role == Role.CUSTOMER and message.public and not ours and \
                (epoch is None or message.created_at >= epoch) and index > last_agent_index:
            new_customer.append(message)
    return rows, new_customer, last_agent_index


def _epoch(engine: Runtime, name: str, stored: datetime | None) -> datetime:
    """The adapter's epoch: set once by its first poll and never changed, so kept in memory."""
    epoch = engine.epochs.get(name)
    if epoch is None:
        if stored is None:
            return utcnow()
        engine.epochs[name] = epoch = stored
    return epoch


def cancelled(reason: str) -> dict[str, Any]:
    """The columns of a turn that ends without a draft, with its reason (claim released)."""
    return {"state": TurnState.CANCELLED, "reason": reason, "updated_at": utcnow(),
            "claim_owner": None, "claim_until": None}


def _ending(engine: Runtime, reason: str, status: str = "") -> Ending:
    """No new draft on a resolved (or merged-away) ticket; its session is closed once."""
    close = reason if engine.config.session == "per_thread" else None
    return Ending(Cancel(cancelled(reason), ENDABLE), close, status)


def _new_turn(engine: Runtime, record: TicketRecord, new_messages: list[Message],
              claim: tuple[str, datetime] | None) -> NewTurn:
    """Messages that arrive together form one turn; they join a turn not yet asked (unless a
    claim took it: ``store.conversation.add_turn``). A new turn supersedes the older ones
    already asked; those answered and not posted yet end, since their answer is outdated."""
    last = new_messages[-1]
    return NewTurn(
        "\n\n".join(m.body.strip() for m in new_messages if m.body.strip()),
        last.external_id, last.created_at, [m.external_id for m in new_messages],
        sessions.slot(record.adapter, record, engine.config.session,
                      engine.site_for(record.adapter)),
        (TurnState.SUBMITTED, TurnState.ANSWERED),
        Cancel(cancelled("superseded by a newer customer message"), (TurnState.ANSWERED,)),
        claim,
    )


def _rating(engine: Runtime, record: TicketRecord) -> str | None:
    """A feedback tag on the ticket rates its latest answered request, once per value."""
    tags = record.tag_set()
    settings = engine.config.feedback
    return "bad" if tags & set(settings.bad_tags) else "good" if tags & set(
        settings.good_tags) else None


def announce(engine: Runtime, record: TicketRecord, applied: Applied) -> None:
    """Log (and emit) what a read's transaction wrote, once it is committed."""
    name, ticket_id = record.adapter, record.external_id
    for source in applied.merged:
        log.info("ticket %s/%s was merged into %s; ending its work", name, source, ticket_id)
    _log_closing(applied)
    verdicts.announce(engine, applied)
    turn = applied.turn
    if turn is not None and turn.reopened:
        log.info("ticket %s/%s reopened; continuing in a new session", name, ticket_id)
    if turn is not None and turn.new:
        log.info("ticket %s/%s: new turn %d", name, ticket_id, turn.id,
                 extra={"adapter": name, "ticket_id": ticket_id, "session_id": turn.session_id,
                        "turn_id": turn.id})
    rating, value = applied.rating, _rating(engine, record)
    if rating is not None and rating.replaced:
        log.info("ticket %s/%s: the agent's %s tag replaces the implicit rating of %s",
                 name, ticket_id, value, rating.request_id)
    elif rating is not None:
        log.info("ticket %s/%s: %s feedback queued for %s", name, ticket_id, value,
                 rating.request_id)


def _log_closing(applied: Applied) -> None:
    for session_id, reason in applied.closing:
        log.info("session %s: closing (%s)", session_id, reason)
