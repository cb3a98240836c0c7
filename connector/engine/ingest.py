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

from adapters.base import Ticket
from connector.core.errors import (
    AuthenticationFailed,
    RateLimited,
    RemoteError,
)
from connector.engine import bounds
from connector.engine.outcomes import Action, Step, disposition
from connector.store import adapters as store
from connector.store import tickets
from connector.store.models import TicketRecord, utcnow
from connector.store.tickets import Report

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 50
AUTH_PAUSE = 300.0
CALIBRATION_FIRST = timedelta(hours=1)


def pause_adapter(engine: Runtime, name: str, seconds: float, reason: str) -> None:
    """Stop calling a helpdesk for a while; shown in ``status``, retried slowly."""
    store.pause(engine.db, name, utcnow() + timedelta(seconds=seconds), reason)


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
        store.note_failure(engine.db, name)


def poll_adapter(engine: Runtime, name: str) -> int:
    """Walk the change feed from the stored cursor; returns how many tickets were marked."""
    adapter = engine.adapters[name]
    if time.monotonic() < engine.poll_not_before.get(name, 0.0):
        return 0  # the change feed asked us to wait (Retry-After)
    now = utcnow()
    started = store.start_poll(engine.db, name, engine.instance_id, now, engine.lease_ttl,
                               now - timedelta(seconds=adapter.settings.start_from))
    if started is None:
        return 0  # another instance polls this adapter, or it is paused
    cursor, epoch = started
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
        stored = _store_page(engine, name, [t for t in page.tickets if _fits(name, t)],
                             page.cursor)
        if stored is None:  # the cursor stays before this page: the next poll reads it again
            log.warning("adapter %s: a feed page could not be stored after %d tries (other "
                        "transactions held its rows); reading it again at the next poll", name,
                        PAGE_TRIES + RACE_TRIES)
            return marked
        marked += stored
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


# The columns a report may change, and those its decision reads besides.
REPORTED = ("status", "resolved", "tags", "channel", "requester_key", "remote_updated_at",
            "reported_messages", "sync_after")
DECIDED_ON = (*REPORTED, "needs_sync", "known_messages")
PAGE_TRIES = 3  # decisions checked against the rows; the last one is written as it is
RACE_TRIES = 3  # more tries for a page whose transaction PostgreSQL rolled back (deadlock)


def _store_page(engine: Runtime, name: str, page: list[Ticket],
                cursor: str | None) -> int | None:
    """Decide a feed page on a snapshot of its rows and store it with the cursor; returns how
    many tickets were marked for a read. Decided again when a row changed in between (a read
    ended, a post was counted), as a poll holding the rows throughout would have decided; the
    third try writes what it decided, since a stale decision costs at most a read. None when
    even the tries after it were rolled back to end deadlocks: nothing is stored and the
    cursor stays where it was."""
    for attempt in range(1, PAGE_TRIES + RACE_TRIES + 1):
        records = tickets.rows(engine.db, name, [t.external_id for t in page])
        reports, marked = decide_page(engine, name, page, records)
        if store.record_page(engine.db, name, reports, cursor, utcnow(),
                             verify=attempt < PAGE_TRIES):
            return marked
    return None


def decide_page(engine: Runtime, name: str, page: list[Ticket],
                records: dict[str, TicketRecord]) -> tuple[list[Report], int]:
    """Decide the page's reports on ``records``, the stored rows as a read-only snapshot
    showed them, and how many tickets were marked for a read. The mark itself is written in
    SQL (``store.tickets``), so a read ending meanwhile cannot erase it."""
    before = {key: {c: getattr(r, c) for c in DECIDED_ON} for key, r in records.items()}
    trusted = name in engine.counts_private
    due: set[str] = set()
    marked = 0
    for ticket in page:
        record = records.get(ticket.external_id)
        if record is None:  # a page may name a ticket twice: the second sees the first
            record = records[ticket.external_id] = tickets.new_record(name, ticket.external_id)
        if _mark_changed(engine, ticket, record, counts_trusted=trusted):
            marked += 1
            due.add(ticket.external_id)
    reports = []
    for key, record in records.items():
        seen = before.get(key)
        changed = {} if seen is None else {c: getattr(record, c) for c in REPORTED
                                            if getattr(record, c) != seen[c]}
        reports.append(Report(record, changed, due=key in due, new=seen is None,
                              seen=seen or {}))
    return reports, marked


def _mark_changed(engine: Runtime, ticket: Ticket, record: TicketRecord, *,
                  counts_trusted: bool = False) -> bool:
    """Take the report into the ticket's row and decide whether the ticket must be read,
    unless the report proves that nothing we have not seen was added; True when marked.

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
      ``conversation._count_read``). Our own post is a private note; were it not counted,
      "known" (which counts it) would run one ahead of the report, and the customer's next
      message would make the two equal and go unread.

    The state, tags and count are stored on every report, read or not.
    """
    tags = " ".join(sorted(ticket.tags))
    key = engine.requester_key(ticket.requester_email, ticket.requester_id)
    unchanged = (
        ticket.message_count is not None and ticket.message_count == record.known_messages
        and ticket.resolved == record.resolved and tags == record.tags
        and not record.needs_sync
    )
    record.status = bounds.label(ticket.status) or ""
    record.resolved = ticket.resolved
    record.tags = tags
    record.channel = bounds.label(ticket.channel)
    record.requester_key = key or record.requester_key
    record.remote_updated_at = ticket.updated_at
    record.reported_messages = ticket.message_count
    if counts_trusted and unchanged:
        return False
    if not record.needs_sync:
        # Until the counts are trusted, a ticket that would have been skipped is the read that
        # can prove them (``_count_read``): it goes ahead of a backlog of first reads, so the
        # proof comes within seconds of the first note instead of after the whole burst.
        record.sync_after = utcnow() - (CALIBRATION_FIRST if unchanged else timedelta(0))
    record.needs_sync = True  # the mark itself is written in SQL, see ``decide_page``
    return True


def mark_ticket(engine: Runtime, adapter: str, ticket_id: str) -> None:
    """Ask for a re-read of one ticket now (a webhook said it changed, or backfill found it)."""
    tickets.mark_for_read(engine.db, adapter, ticket_id, utcnow())
