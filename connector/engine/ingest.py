"""From helpdesk to the store: poll changed tickets and mark them to be read.

Polling only records *which* tickets changed, in the same transaction that advances the cursor;
reading a conversation is a separate, retryable step per ticket (``conversation.py``). A crash
between any two remote calls therefore loses nothing: the cursor never moves past a ticket that
is not marked.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlmodel import Session, col, select

from adapters.base import Ticket
from connector.core.errors import (
    AuthenticationFailed,
    RateLimited,
    RemoteError,
)
from connector.engine import bounds
from connector.engine.outcomes import Action, Step, disposition
from connector.store import claims
from connector.store.db import session_scope
from connector.store.models import (
    AdapterState,
    TicketRecord,
    utcnow,
)
from connector.store.tickets import mark_due

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 50
AUTH_PAUSE = 300.0
CALIBRATION_FIRST = timedelta(hours=1)


def adapter_state(db: Session, name: str) -> AdapterState:
    state = db.get(AdapterState, name)
    if state is None:
        state = AdapterState(adapter=name)
        db.add(state)
    return state


def pause_adapter(engine: Runtime, name: str, seconds: float, reason: str) -> None:
    """Stop calling a helpdesk for a while; shown in ``status``, retried slowly."""
    with session_scope(engine.db) as db:
        state = adapter_state(db, name)
        state.paused_until = utcnow() + timedelta(seconds=seconds)
        state.pause_reason = reason
        state.consecutive_failures += 1


def handle_adapter_error(engine: Runtime, name: str, exc: RemoteError, doing: str) -> None:
    """What a helpdesk error means for the whole adapter (not for one item).

    Only refused credentials pause an adapter. A 429 does not: the HTTP client already holds
    back the calls the vendor's limit covers, and each item waits its own ``Retry-After``, so
    one busy endpoint never stops posts or reads that another limit governs.
    """
    if disposition(exc, Step.FEED) is Action.PAUSE:
        kind = "authentication failed" if isinstance(exc, AuthenticationFailed) else \
            "permission denied"
        log.error("adapter %s paused: %s while %s (%s); retrying in %ds", name, kind, doing,
                  exc, AUTH_PAUSE)
        pause_adapter(engine, name, AUTH_PAUSE, f"{kind}: {exc}")
        engine.emit("adapter_paused", adapter=name, reason=kind, status=exc.status)
    elif isinstance(exc, RateLimited):
        log.info("adapter %s rate limited while %s; waiting %.0fs", name, doing,
                 exc.retry_after or 0.0)
    else:
        log.warning("adapter %s: %s failed: %s", name, doing, exc)
        with session_scope(engine.db) as db:
            adapter_state(db, name).consecutive_failures += 1


def adapter_paused(db: Session, name: str) -> bool:
    state = db.get(AdapterState, name)
    return bool(state and state.paused_until and state.paused_until > utcnow())


def poll_adapter(engine: Runtime, name: str) -> int:
    """Walk the change feed from the stored cursor; returns how many tickets were marked."""
    adapter = engine.adapters[name]
    if time.monotonic() < engine.poll_not_before.get(name, 0.0):
        return 0  # the change feed asked us to wait (Retry-After)
    with session_scope(engine.db) as db:
        now = utcnow()
        if not claims.hold_adapter(db, name, engine.instance_id, now, engine.lease_ttl):
            return 0  # another instance polls this adapter
        if adapter_paused(db, name):
            return 0
        state = adapter_state(db, name)
        state.last_poll_at = now
        if state.epoch is None:
            state.epoch = now - timedelta(seconds=adapter.settings.start_from)
        cursor, epoch = state.cursor, state.epoch
    marked = 0
    for _ in range(MAX_PAGES_PER_POLL):
        try:
            page = adapter.poll_changes(cursor, epoch)
        except RemoteError as exc:
            handle_adapter_error(engine, name, exc, "polling changes")
            if exc.retry_after:
                engine.poll_not_before[name] = time.monotonic() + exc.retry_after
            engine.emit("poll_failed", adapter=name, error=type(exc).__name__)
            return marked
        with session_scope(engine.db) as db:
            tickets = [t for t in page.tickets if _fits(name, t)]
            records = _ticket_rows(db, name, [t.external_id for t in tickets])
            trusted = name in engine.counts_private
            for ticket in tickets:
                marked += _mark_changed(engine, db, name, ticket, records,
                                        counts_trusted=trusted)
            state = adapter_state(db, name)
            now = utcnow()
            if page.cursor != state.cursor:
                state.cursor_moved_at = now
            state.cursor = page.cursor
            state.last_poll_ok_at = now
            state.consecutive_failures = 0
            state.paused_until = None
            state.pause_reason = None
        cursor = page.cursor
        if not page.more:
            break
    if marked:
        log.info("adapter %s: %d changed ticket(s) to read", name, marked)
    engine.emit("poll_ok", adapter=name, tickets=marked)
    return marked


def _fits(adapter: str, ticket: Ticket) -> bool:
    if bounds.ticket_id_fits(ticket.external_id):
        return True
    log.error("adapter %s: a ticket id of %d characters cannot be stored; ticket left out",
              adapter, len(ticket.external_id))
    return False


def _ticket_rows(db: Session, adapter: str, ids: list[str]) -> dict[str, TicketRecord]:
    """The stored rows of a feed page's tickets, by external id: one query per 500 tickets."""
    rows: dict[str, TicketRecord] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 500):
        for record in db.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter,
            col(TicketRecord.external_id).in_(unique[start:start + 500]),
        )):
            rows[record.external_id] = record
    return rows


def _mark_changed(
    engine: Runtime, db: Session, adapter: str, ticket: Ticket, records: dict[str, TicketRecord],
    *, counts_trusted: bool = False,
) -> int:
    """Upsert the ticket and mark it for a conversation read, unless the report proves that
    nothing we have not seen was added; returns 1 when marked.

    Times cannot prove that: helpdesk timestamps have one-second resolution, so "same
    updated_at" says nothing about a message written in the same second as the last one we
    read. A count can: messages are only ever added (Zendesk redacts, it never removes), so a
    reported count equal to the number we know of means no message came that we have not read,
    however close together they were written. That is why the read is skipped only when all of
    these hold, and any doubt means a read as before:

    - the report has a count, and it equals ``known_messages`` (None, our "unsure", never does);
    - ``resolved`` and the tags are unchanged, since those start work of their own (closing the
      session, collecting feedback) that only a read does;
    - the row is not already due for a read: a pending read must still happen;
    - ``counts_trusted``: the helpdesk's count has been seen to include private messages (see
      ``_count_read``). Our own post is a private note; were it not counted, "known" (which
      counts it) would run one ahead of the report, and the customer's next message would make
      the two equal and go unread.

    The state, tags and count are stored on every report, read or not.
    """
    record = records.get(ticket.external_id)
    tags = " ".join(sorted(ticket.tags))
    key = engine.requester_key(ticket.requester_email, ticket.requester_id)
    if record is None:
        record = TicketRecord(adapter=adapter, external_id=ticket.external_id)
        records[ticket.external_id] = record  # a page may name a ticket twice
    unchanged = (
        ticket.message_count is not None and ticket.message_count == record.known_messages
        and ticket.resolved == record.resolved and tags == record.tags
        and not record.needs_sync
    )
    nothing_new = counts_trusted and unchanged
    record.status = bounds.label(ticket.status) or ""
    record.resolved = ticket.resolved
    record.tags = tags
    record.channel = bounds.label(ticket.channel)
    record.requester_key = key or record.requester_key
    record.remote_updated_at = ticket.updated_at
    record.reported_messages = ticket.message_count
    if nothing_new:
        db.add(record)
        return 0
    if not record.needs_sync:
        # Until the counts are trusted, a ticket that would have been skipped is the read that
        # can prove them (``_count_read``): it goes ahead of a backlog of first reads, so the
        # proof comes within seconds of the first note instead of after the whole burst.
        record.sync_after = utcnow() - (CALIBRATION_FIRST if unchanged else timedelta(0))
    mark_due(record)
    db.add(record)
    return 1


def mark_ticket(engine: Runtime, adapter: str, ticket_id: str) -> None:
    """Ask for a re-read of one ticket now (a webhook said it changed, or backfill found it)."""
    with session_scope(engine.db) as db:
        record = db.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter, TicketRecord.external_id == ticket_id
        )).first()
        if record is None:
            record = TicketRecord(adapter=adapter, external_id=ticket_id)
        mark_due(record)
        record.sync_after = utcnow()
        record.known_messages = None  # unsure until the read: the next report reads again
        db.add(record)


_COUNT_OWN_POST = text("UPDATE ticket SET known_messages = known_messages + 1 "
                       "WHERE adapter = :adapter AND external_id = :ticket")
_FORGET_COUNT = text("UPDATE ticket SET known_messages = NULL "
                     "WHERE adapter = :adapter AND external_id = :ticket")


def note_own_post(db: Connection, adapter: str, ticket_id: str, *, counted: bool) -> None:
    """Our post is one more message on the ticket: count it, so that the report our post itself
    causes in the change feed needs no read. Runs in the transaction that records the post.

    ``counted=False`` (a post found again by its marker after a crash, or a real draft, which a
    helpdesk may not count as a message) makes the count unknown instead: a wrong "known" that
    runs ahead of the helpdesk's count would hide the customer's next message.
    """
    db.execute(_COUNT_OWN_POST if counted else _FORGET_COUNT,
               {"adapter": adapter, "ticket": ticket_id})


def claim_tickets(engine: Runtime, db: Session, limit: int) -> list[TicketRecord]:
    """Claim tickets due for a read, leased like turns (``engine.lease_ttl``, renewed by the
    heartbeat while this instance holds them)."""
    now = utcnow()
    paused = set(db.exec(select(AdapterState.adapter).where(
        col(AdapterState.paused_until).is_not(None), col(AdapterState.paused_until) > now,
    )).all())
    active = [n for n in engine.adapters if n not in paused]
    return claims.claim_tickets(db, active, now, engine.lease_ttl, limit)
