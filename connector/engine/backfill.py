"""Backfill: draft answers for the tickets that were already waiting when the connector started.

Live polling treats every message older than an adapter's epoch as history, so a customer who
wrote before the first poll never gets a draft. Backfill lists the adapter's tickets for a window
(``Adapter.list_tickets``, whose position is its own: the live cursor is neither read nor moved),
decides from each conversation whether the customer still waits, and queues those tickets through
the live rules (``conversation.plan`` with ``history_ok``): one turn per ticket, in the ticket's
session. Meanwhile and afterwards it drives the engine's dispatch and housekeeping, without
polling, until its turns have ended.

Each decision is a ``backfill_item`` row, written in the transaction that queues the turn, so a
run stopped anywhere (Ctrl-C, a crash) resumes when run again: finished tickets are skipped,
queued ones followed to their end, none queued twice. A dry run reads the helpdesk and the store
and writes to neither.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from adapters.base import Adapter, Message, Ticket
from adapters.registry import adapter_class
from connector.config import Config
from connector.core.errors import (
    AuthenticationFailed,
    BackfillError,
    HelpdeskRefused,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    RemoteError,
)
from connector.engine import bounds
from connector.engine.backfill_request import (
    BackfillResult,
    Progress,
    ProgressListener,
    Window,
    waiting_message,
)
from connector.engine.conversation import announce, plan
from connector.engine.runtime import Runtime
from connector.store import backfill as store
from connector.store import conversation
from connector.store.db import Conflict, Database
from connector.store.models import BackfillItem, TicketRecord, TurnState, utcnow
from connector.store.models import BackfillOutcome as Outcome

log = logging.getLogger(__name__)

LISTING_BACKOFF_CAP = 300.0
MAX_LISTING_RESTARTS = 8  # with backoff about ten minutes: past that, a broken helpdesk
MAX_READ_WAITS = 50  # rate-limit waits for one ticket's conversation before it counts as failed
PROGRESS_EVERY = 0.1  # seconds between progress reports
HOUSEKEEPING_EVERY = 1.0
IDLE_SLEEP = 0.05  # also the least time between two rounds of the engine's jobs


def supports_backfill(adapter: type[Adapter]) -> bool:
    return adapter.list_tickets is not Adapter.list_tickets


def run_backfill(
    config: Config,
    adapter_name: str,
    window: Window,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    stop: threading.Event | None = None,
    on_progress: ProgressListener | None = None,
) -> BackfillResult:
    """One backfill run, from start to a clean stop; owns the engine it builds.

    Raises ``BackfillError`` for a request it cannot serve, before any remote call, and lets
    ``InstanceConflict`` (a daemon holds the SQLite file) and ``UppzyAccessError`` through.
    """
    settings = next((a for a in config.adapters if a.name == adapter_name), None)
    if settings is None:
        known = ", ".join(a.name for a in config.adapters) or "none"
        raise BackfillError(f"--adapter: no adapter named {adapter_name!r} (configured: {known})")
    if not supports_backfill(adapter_class(settings.type)):
        raise BackfillError(
            f"--adapter: {adapter_name!r} is a {settings.type} adapter, which does not support "
            "backfill")
    if limit is not None and limit < 1:
        raise BackfillError("--limit: must be at least 1")
    stop = stop or threading.Event()
    if dry_run:
        return _dry_run(config, adapter_name, window, limit, stop, on_progress)
    engine = Runtime(config)
    try:
        engine.start()
        engine.check_uppzy()
        result = Backfill(engine, adapter_name, window, limit=limit, stop=stop,
                          on_progress=on_progress).run()
    except BaseException:  # including a second Ctrl-C: no more waiting for the steps in hand
        engine.shutdown(grace=0.0)
        raise
    engine.shutdown()
    return result


def _dry_run(
    config: Config, name: str, window: Window, limit: int | None, stop: threading.Event,
    on_progress: ProgressListener | None,
) -> BackfillResult:
    """Without an engine: starting one migrates and claims, and a dry run writes nothing (not
    even a new SQLite file: without one there is simply nothing done yet)."""
    settings = config.adapter(name)
    adapter = adapter_class(settings.type)(settings)
    db = store.open_if_present(config.database.url)
    try:
        return Backfill(None, name, window, adapter=adapter, db=db, limit=limit, stop=stop,
                        on_progress=on_progress).run()
    finally:
        adapter.close()
        if db is not None:
            store.close(db)


class Backfill:
    """One run over one adapter; ``engine`` is None for a dry run."""

    def __init__(
        self,
        engine: Runtime | None,
        name: str,
        window: Window,
        *,
        adapter: Adapter | None = None,
        db: Database | None = None,
        limit: int | None = None,
        stop: threading.Event | None = None,
        on_progress: ProgressListener | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.adapter = adapter or _engine(engine).adapters[name]
        self.db: Database | None = db if engine is None else engine.db
        # Without an end the listing would chase the tickets our own posts keep changing.
        self.window = Window(window.since, window.until or utcnow())
        self.limit = limit
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.progress = Progress()
        self.result = BackfillResult(self.progress)
        self._store = self.db is not None and store.has_items(self.db)
        self._seen: set[str] = set()
        self._open: set[int] = set()  # turns this run waits for
        self._new_turns = 0
        self._reported = self._housekept = self._beat = self._worked = 0.0

    @property
    def dry_run(self) -> bool:
        return self.engine is None

    def _halted(self) -> bool:
        return self.stop.is_set() or (self.engine is not None and self.engine.fatal is not None)

    def run(self) -> BackfillResult:
        try:
            self._list()
        except HelpdeskRefused as exc:
            self.result.fatal = str(exc)
        self.progress.listing = False
        if not self.dry_run and self.result.fatal is None:
            self._drive()
        self.result.interrupted = self.stop.is_set()
        if self.engine is not None and self.engine.fatal is not None:
            self.result.fatal = str(self.engine.fatal)
        self._report(force=True)
        return self.result

    # ----- listing -----------------------------------------------------------------------------
    def _list(self) -> None:
        """Walk the listing; on a listing error, wait and walk it again (seen tickets are
        skipped), because a generator that raised cannot be resumed."""
        for attempt in range(1, MAX_LISTING_RESTARTS + 1):
            try:
                for page in self.adapter.list_tickets(self.window.since, self.window.until):
                    for ticket in page:
                        if self._halted() or self._limit_reached():
                            return
                        if ticket.external_id not in self._seen:
                            self._seen.add(ticket.external_id)
                            self.progress.found += 1
                            self._handle(ticket)
                        self._tick()
                return
            except (AuthenticationFailed, PermissionDenied) as exc:
                raise HelpdeskRefused(f"{self.name}: listing tickets refused: {exc}") from exc
            except RemoteError as exc:
                if attempt == MAX_LISTING_RESTARTS:
                    self.result.unfinished = f"listing tickets kept failing: {exc}"
                    log.error("%s: %s; run again later", self.name, self.result.unfinished)
                    return
                wait = max(exc.retry_after or 0.0, min(LISTING_BACKOFF_CAP, 2.0 ** attempt))
                log.warning("%s: listing tickets failed (%s); again in %.0fs", self.name, exc, wait)
                self._pause(wait)

    def _limit_reached(self) -> bool:
        return self.limit is not None and self._new_turns >= self.limit

    def _handle(self, ticket: Ticket) -> None:
        known = self._known(ticket.external_id)
        if known.item is not None and self._resume(known.item, ticket):
            return
        if ticket.resolved:
            self._skip(ticket, f"ticket {ticket.status or 'resolved'}")
            return
        messages = self._read(ticket)
        if messages is None:
            return
        waiting, reason = waiting_message(messages, known.posted_ids)
        if waiting is None:
            self._skip(ticket, reason)
        elif waiting.external_id in known.in_turns:
            self._skip(ticket, "already has a turn")
        elif self.dry_run:
            self._new_turns += 1
            self.progress.queued += 1
            self.result.would_queue.append(ticket)
        else:
            self._queue(ticket, messages, waiting)

    def _resume(self, item: BackfillItem, ticket: Ticket) -> bool:
        """Whether an earlier run's decision still holds (True: nothing more to do here)."""
        if item.outcome == Outcome.QUEUED and item.turn_id is not None:
            if self.dry_run:
                self._count_skip("queued by an earlier run")
            else:
                self.progress.resumed += 1
                self._open.add(item.turn_id)
            return True
        if item.outcome in (Outcome.DRAFTED, Outcome.NOT_DRAFTED):
            self._count_skip("done by an earlier run")
            return True
        unchanged = item.ticket_updated_at is not None and ticket.updated_at is not None and \
            ticket.updated_at <= item.ticket_updated_at
        if item.outcome == Outcome.SKIPPED and unchanged:
            self._count_skip(item.reason or "skipped by an earlier run")
            return True
        return False  # an error, or the ticket changed since: decide again

    def _read(self, ticket: Ticket) -> list[Message] | None:
        """The conversation, waiting out rate limits; None when it cannot be read (recorded)."""
        for _ in range(MAX_READ_WAITS):
            try:
                return self.adapter.list_messages(ticket)
            except RateLimited as exc:
                self._pause(exc.retry_after or 60.0)
                if self._halted():
                    return None
            except AuthenticationFailed as exc:
                raise HelpdeskRefused(f"{self.name}: reading tickets refused: {exc}") from exc
            except (NotFound, Moved) as exc:
                self._skip(ticket, f"ticket no longer available ({type(exc).__name__})")
                return None
            except RemoteError as exc:
                self._fail(ticket, f"could not read it: {exc}")
                return None
        self._fail(ticket, "still rate limited")
        return None

    # ----- decisions ---------------------------------------------------------------------------
    def _queue(self, ticket: Ticket, messages: list[Message], waiting: Message) -> None:
        """Turn and decision in one transaction, so a crash leaves both or neither."""
        engine = _engine(self.engine)
        seen = conversation.read(engine.db, self.name, ticket.external_id,
                                 [m.external_id for m in messages], epoch=False,
                                 shadow=engine.config.shadow(engine.config.adapter(self.name)))
        columns = _ticket_columns(engine, ticket)
        record = seen.ticket or TicketRecord(adapter=self.name, external_id=ticket.external_id)
        for key, value in columns.items():
            setattr(record, key, value)
        try:
            turn_id, applied = store.queue(
                engine.db, columns, plan(engine, record, messages, seen, history_ok=True),
                waiting.external_id, self._decision(ticket, Outcome.QUEUED, None),
                self._decision(ticket, Outcome.SKIPPED, "not queued by the live rules"))
        except Conflict:  # the live poller stored the same messages meanwhile
            self._fail(ticket, "changed while being queued; run again")
            return
        announce(engine, record, applied)
        if turn_id is None:
            self._count_skip("not queued by the live rules")
            return
        self._new_turns += 1
        self.progress.queued += 1
        self._open.add(turn_id)
        log.info("backfill %s: ticket %s queued as turn %d", self.name, ticket.external_id,
                 turn_id)

    def _skip(self, ticket: Ticket, reason: str) -> None:
        log.debug("backfill %s: ticket %s skipped: %s", self.name, ticket.external_id, reason)
        self._count_skip(reason)
        self._write(ticket, Outcome.SKIPPED, reason)

    def _fail(self, ticket: Ticket, reason: str) -> None:
        log.warning("backfill %s: ticket %s: %s", self.name, ticket.external_id, reason)
        self.progress.failed += 1
        self.result.reasons[reason[:120]] += 1
        self._write(ticket, Outcome.ERROR, reason)

    def _count_skip(self, reason: str) -> None:
        self.progress.skipped += 1
        self.result.reasons[reason] += 1

    def _write(self, ticket: Ticket, outcome: Outcome, reason: str) -> None:
        if self.engine is not None:
            store.record(self.engine.db, self.name, ticket.external_id,
                         self._decision(ticket, outcome, reason), utcnow())

    def _decision(self, ticket: Ticket, outcome: Outcome, reason: str | None) -> store.Decision:
        return store.Decision(outcome, reason, self.window.since, self.window.until,
                              ticket.updated_at)

    # ----- reading the store (also in a dry run) -----------------------------------------------
    def _known(self, ticket_id: str) -> store.Known:
        if not self._store:
            return store.Known(None, set(), set())
        assert self.db is not None  # the tables exist, so the database does
        return store.known(self.db, self.name, ticket_id)

    # ----- driving the engine ------------------------------------------------------------------
    def _drive(self) -> None:
        """Dispatch and housekeep until this run's turns have ended, or waiting is pointless."""
        engine = _engine(self.engine)
        patience = engine.config.uppzy.answer_timeout + engine.config.engine.max_backoff + 60
        last_change, left = time.monotonic(), len(self._open)
        while self._open and not self.stop.is_set() and engine.fatal is None:
            self._tick()
            if len(self._open) != left:
                last_change, left = time.monotonic(), len(self._open)
            elif time.monotonic() - last_change > patience:
                log.warning("backfill %s: %d turn(s) made no progress for %.0fs; they go on in "
                            "the daemon or the next run", self.name, left, patience)
                self.result.stalled = True
                return
            self.stop.wait(IDLE_SLEEP)

    def _tick(self) -> None:
        """The engine's jobs between two tickets, so answers flow while the listing goes on."""
        engine = self.engine
        now = time.monotonic()
        if engine is not None and engine.fatal is None and now - self._worked >= IDLE_SLEEP:
            self._worked = now
            if now - self._beat > engine.config.engine.lease_ttl / 3:
                self._beat = now
                engine.heartbeat()
            engine.dispatch()
            if now - self._housekept > HOUSEKEEPING_EVERY:
                self._housekept = now
                engine.housekeeping()
            self._follow_turns()
        self._report()

    def _follow_turns(self) -> None:
        """Count the turns that ended and record the outcome on their backfill items."""
        if not self._open:
            return
        db = _engine(self.engine).db
        ended = store.ended_turns(db, sorted(self._open))
        if not ended:
            return
        store.record_ended(db, self.name, [
            (turn_id, Outcome.DRAFTED, None) if state == TurnState.POSTED else
            (turn_id, Outcome.NOT_DRAFTED, reason) for turn_id, state, reason in ended
        ], utcnow())
        for turn_id, state, reason in ended:
            self._open.discard(turn_id)
            if state == TurnState.POSTED:
                self.progress.drafted += 1
            elif state == TurnState.FAILED:
                self.progress.failed += 1
                self.result.reasons[(reason or "failed")[:120]] += 1
            else:
                self._count_skip(reason or "cancelled")

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is not None and (force or now - self._reported >= PROGRESS_EVERY):
            self._reported = now
            self.on_progress(replace(self.progress))

    def _pause(self, seconds: float) -> None:
        """Wait for the helpdesk, while the engine keeps working and Ctrl-C stays quick."""
        deadline = time.monotonic() + seconds
        while not self._halted() and time.monotonic() < deadline:
            self._tick()
            self.stop.wait(min(IDLE_SLEEP * 4, max(0.0, deadline - time.monotonic())))


def _engine(engine: Runtime | None) -> Runtime:
    if engine is None:
        raise RuntimeError("a dry run has no engine")
    return engine


def _ticket_columns(engine: Runtime, ticket: Ticket) -> dict[str, object]:
    """The ticket's row as the listing reports it; its count is unknown until a live read
    (backfill reads without counting)."""
    columns: dict[str, object] = {
        "status": bounds.label(ticket.status) or "", "resolved": ticket.resolved,
        "tags": " ".join(sorted(ticket.tags)), "channel": bounds.label(ticket.channel),
        "remote_updated_at": ticket.updated_at, "known_messages": None,
    }
    key = engine.requester_key(ticket.requester_email, ticket.requester_id)
    if key:
        columns["requester_key"] = key
    return columns
