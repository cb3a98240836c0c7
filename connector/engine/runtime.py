"""The engine: one object that owns the database, the adapters, the Uppzy client and the workers.

The scheduler (or ``run --once``) only calls ``poll``, ``dispatch`` and ``housekeeping`` on it.
``dispatch`` never waits for remote calls: it claims due rows up to the number of free workers
and hands them to a thread pool, so a slow answer never delays another ticket.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import IO, Any

from adapters.base import Adapter
from adapters.registry import adapter_class
from connector.config import Config
from connector.core.errors import (
    RemoteError,
    UppzyAccessError,
)
from connector.core.http import RetryPolicy, Timeouts
from connector.engine import (
    conversation,
    housekeeping,
    idle,
    ingest,
    sessions,
    turns,
    verdicts,
)
from connector.engine.estimator import AnswerTimeEstimator
from connector.engine.sync_slots import SyncSlots
from connector.engine.uppzy_health import UppzyHealth
from connector.store import claims, pauses, retention, secrets
from connector.store import turns as turn_rows
from connector.store.credentials import DatabaseCredentials
from connector.store.db import DatabaseError, StoreError, make_engine, migrate
from connector.store.models import Turn, TurnState, utcnow
from connector.store.writer import GroupWriter
from connector.uppzy import UppzyClient

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
"""Receives every engine event: (name, fields). See ``Runtime.emit`` for the names."""

BACKOFF_BASE = 2.0
TURN_STEPS = (turns.advance, turns.advance_handed)  # the steps whose item is a claimed turn
RETENTION_EVERY = 600.0  # seconds between retention passes


class Runtime(UppzyHealth):
    def __init__(self, config: Config) -> None:
        self.config = config
        self._listeners: list[Listener] = []
        self.instance_id = config.engine.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.db = make_engine(config.database.url)
        self.writer = GroupWriter(self.db)  # the steps' outcomes, one transaction a batch
        # sync mode: how many chats may wait for their answer at once (``sync_slots.py``)
        self.sync_slots = SyncSlots(config.uppzy.sync_concurrency) \
            if config.uppzy.mode == "sync" else None
        self.adapters: dict[str, Adapter] = {
            s.name: adapter_class(s.type)(s, observer=self._observe_http) for s in config.adapters
        }
        for adapter in self.adapters.values():  # rotated OAuth refresh tokens live in the db
            adapter.bind_credentials(DatabaseCredentials(self.db))
            adapter.size_pool(self._threads_calling_out())
        u = config.uppzy
        self.uppzy = UppzyClient(
            u.base_url, u.api_key.get_secret_value(),
            timeouts=Timeouts(connect=u.connect_timeout, read=u.read_timeout),
            retry=RetryPolicy(attempts=3, max_inline_wait=2.0),
            observer=self._observe_http,
            sync_read_timeout=u.answer_timeout,
            pool_size=self._threads_calling_out(),
        )
        self.estimator = AnswerTimeEstimator(default_first_poll=min(u.poll_interval, 2.0))
        # Adapters whose change feed's message counts were seen to include private messages;
        # only theirs are trusted to skip a read (``conversation._count_read``). Relearned
        # after a start.
        self.counts_private: set[str] = set()
        self.count_proofs: dict[str, set[str]] = {}  # adapter -> tickets whose read proved it
        self.fatal: UppzyAccessError | None = None
        self._uppzy_verified = False
        self.uppzy_failures = 0  # transient failures since the last success (UPPZY_DOWN_AFTER)
        self.uppzy_failing_since: datetime | None = None
        self.poll_not_before: dict[str, float] = {}  # adapter -> monotonic time (a poll's 429)
        self.epochs: dict[str, datetime] = {}  # per adapter; see conversation._epoch
        self._backlog: deque[tuple[Callable[..., None], Any, bool]] = deque()
        self._sync_backlog: deque[Turn] = deque()  # questions waiting for a sync-chat slot
        self._waiting = 0  # sync chats in flight
        # Work in hand, and the only claims the heartbeat renews: reads, turns, closes, feedback.
        self._held: set[int] = set()
        self._turns_held: set[int] = set()
        self._claimed_again: set[int] = set()  # claimed while their step still ran: see _claim
        self.sessions_held: set[str] = set()
        self.feedback_held: set[int] = set()
        self._pool = ThreadPoolExecutor(max_workers=config.engine.workers,
                                        thread_name_prefix="step")
        self._lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        self._running = self._uppzy_steps = 0
        self._stopping = False
        self.lease_ttl = timedelta(seconds=config.engine.lease_ttl)
        # A post may still land this long after its holder's claim expired (the helpdesk's read
        # timeout, plus connecting): only then may another holder look for it and post.
        self.posting_grace = timedelta(seconds=5.0 + max(
            (s.timeout for s in config.adapters), default=30.0))
        self._last_heartbeat = 0.0
        self._instance_lock: IO[str] | None = None
        self._next_retention = 0.0  # monotonic time of the next retention pass
        self._installation_key = ""  # read at start(), after the migrations made its table

    def _threads_calling_out(self) -> int:
        """How many threads may call one remote system at once, which its connection pool is
        sized to: the workers, the sync chats waiting (they post their own answers), and the
        poller and housekeeping."""
        return self.config.engine.workers + (self.sync_slots.most if self.sync_slots else 0) + 2

    # ----- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Migrate; take back what a killed run left claimed: on SQLite (one instance) every
        claim, on PostgreSQL those under this instance id (a pod restarted with a fixed id)."""
        migrate(self.db)
        self._installation_key = secrets.installation_key(self.db)
        # A (re)start usually comes with a fixed config: a pause for refused credentials ends
        # here rather than holding the adapter for the rest of its five minutes.
        for name in pauses.resume(self.db, list(self.adapters)):
            log.info("adapter %s: pause lifted at start; trying its credentials again", name)
        self._instance_lock = claims.lock_sqlite_file(self.db)
        # The only instance (it holds the SQLite file): earlier claims, and a killed
        # predecessor's poll leases that would otherwise hold polling for lease_ttl, are ours.
        claims.take_back(self.db, self.instance_id, sole=self._instance_lock is not None)

    def check_uppzy(self) -> None:
        """The cheap connectivity check the API docs recommend before traffic starts."""
        if self.config.uppzy.tenant_id:
            try:
                self.uppzy.tenant_limits(self.config.uppzy.tenant_id)
            except RemoteError as exc:
                try:
                    self.check_uppzy_access(exc)
                except UppzyAccessError as refused:
                    self.emit("uppzy_refused", reason=str(refused))
                    raise
                log.warning("Uppzy tenant limits check failed: %s", exc)
            else:
                self.note_uppzy_ok()

    def shutdown(self, grace: float = 8.0) -> bool:
        """Let the steps in hand finish for up to ``grace`` seconds; True if all did."""
        self._stopping = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.in_flight()
        if left:
            log.warning("%d step(s) still waiting on a remote call; they resume after restart",
                        left)
        with self._dispatch_lock:
            waiting = [item.id for fn, item, _ in self._backlog if fn is conversation.sync_ticket]
            self._backlog.clear()
            self._sync_backlog.clear()  # their claims go with release_all below
        with self._lock:
            self._held.difference_update(waiting)
            self._turns_held.clear()
            self._claimed_again.clear()
        try:  # claimed reads never started are due again now, for any instance
            claims.hand_back(self.db, self.instance_id, waiting)
        except StoreError as exc:
            log.warning("could not hand back this instance's claims (%s); they expire after "
                        "lease_ttl", exc.kind)
        self.writer.close()  # a step still finishing now writes its outcome on its own
        for adapter in self.adapters.values():
            adapter.close()
        self.uppzy.close()
        if self._instance_lock is not None:
            self._instance_lock.close()
            self._instance_lock = None
        return left == 0

    def heartbeat(self) -> None:
        """Renew this instance's adapter leases and the claims of the work it has in hand
        (every third of the TTL); claims of steps that ended, or died, are left to expire."""
        self._last_heartbeat = time.monotonic()
        with self._lock:
            held = claims.Held(tickets=list(self._held), turns=list(self._turns_held),
                               sessions=list(self.sessions_held),
                               feedback=list(self.feedback_held))
        claims.heartbeat(self.db, self.instance_id, self.lease_ttl, held)

    def run_once(self, idle_sleep: float = 0.05) -> bool:
        """Poll every adapter once, then drive the work to its end or to ``answer_timeout``.

        Returns True when nothing is left in flight (False: time ran out, or Uppzy refused).
        """
        for name in self.adapters:
            self.poll(name)
        deadline = time.monotonic() + self.config.uppzy.answer_timeout + 10
        while time.monotonic() < deadline:
            if time.monotonic() - self._last_heartbeat > self.config.engine.lease_ttl / 3:
                self.heartbeat()
            self.dispatch()
            self.housekeeping()
            if self.fatal is not None:
                return False
            if not self.busy():
                return True
            time.sleep(idle_sleep)
        return False

    # ----- the three jobs --------------------------------------------------------------------
    def poll(self, name: str) -> int:
        return ingest.poll_adapter(self, name)

    def dispatch(self) -> int:
        """Hand due work to free workers; returns how many steps were started.

        Called by the scheduler's tick and by every worker that finishes a step; one dispatch
        at a time, so the count of free workers and the one-probe rule below hold. One claim
        transaction takes up to ``batch_size`` items into a local backlog that later calls
        drain first: a worker finishing a step then starts the next without a database round
        trip, and claims stop competing with the steps for SQLite's write lock. In sync mode,
        questions go to waiting slots of their own (``uppzy.sync_concurrency``, or sized from
        arrivals and answer times, ``sync_slots.py``), so the 5-60 s
        a sync chat takes never holds a worker.
        """
        with self._dispatch_lock:
            if self.fatal is not None:
                return 0
            with self._lock:
                free = self.config.engine.workers - self._running
                waiting = self._waiting
            limit = self.sync_slots.limit() if self.sync_slots else 0
            slots = limit - waiting
            work = free > 0 and not self._backlog
            asks = self._questions_to_claim(slots, limit)
            if work or asks:
                self._claim(work, asks)
            started = 0
            while free > 0 and self._backlog:
                fn, item, uppzy = self._backlog.popleft()
                self._start(fn, item, uppzy=uppzy)
                started += 1
                free -= 1
            while slots > 0 and self._sync_backlog:
                self._start(turns.advance, self._sync_backlog.popleft(), uppzy=True, wait=True)
                started += 1
                slots -= 1
            return started

    def new_turn_claim(self) -> tuple[str, datetime] | None:
        """The claim a read gives the turn it creates (owner, until), so that turn's question
        goes to the next free worker or waiting slot (``hand_on``) without a claim of its own:
        that claim was a third of all claims, and a dispatch's wait. None until an Uppzy call
        succeeded (a rejected key must cost one call, see ``_claim``) or while stopping."""
        if not self._uppzy_verified or self._stopping or self.fatal is not None:
            return None
        return self.instance_id, utcnow() + self.lease_ttl

    def hand_on(self, turn: Turn, status: str, session_busy: bool) -> None:
        """Take a turn created claimed by this instance's read (``new_turn_claim``) into the
        backlog, as if a claim had taken it; the dispatch after the read's step starts it,
        from what the read saw (the ticket open with ``status``, no newer turn, no agent
        reply after the question) instead of a check of its own."""
        with self._lock:
            if turn.id in self._turns_held:
                return
            self._turns_held.add(turn.id)  # type: ignore[arg-type]
        if self.sync_slots is not None:
            self._sync_backlog.append(turn)
        else:
            seen = turns.Situation(False, status, False, False, session_busy)
            self._backlog.append((turns.advance_handed, turns.Handed(turn, seen), True))

    def _questions_to_claim(self, slots: int, limit: int) -> int:
        """Sync mode: questions to claim for ``slots`` free waiting slots, in batches. Claimed
        only when the questions in hand cannot fill the free slots, and then a quarter of the
        limit more: the next slots that free up start from those without a claim transaction
        each (one per slot held SQLite's write lock once per answer)."""
        if slots <= 0 or len(self._sync_backlog) >= slots:
            return 0
        ahead = max(1, limit // 4)
        return slots + ahead - len(self._sync_backlog)

    def _claim(self, work: bool, asks: int) -> None:
        """Claim due reads and turns into the backlog, alternating so neither starves; in sync
        mode, questions only as many as there are free waiting slots."""
        limit = self.config.engine.batch_size
        sync = self.sync_slots is not None
        batches: list[tuple[int, bool | None]] = []
        if not self._uppzy_verified:
            # Until one Uppzy call succeeded, a rejected key must cost one call, not a burst.
            with self._lock:
                probing = self._uppzy_steps > 0
            if not probing and (work or asks):
                batches.append((1, None))
        else:
            if work:
                batches.append((limit, False if sync else None))
            if asks:
                batches.append((asks, True))
        tickets, due = claims.claim_work(
            self.writer, self.instance_id, self.lease_ttl, adapters=list(self.adapters),
            tickets=limit if work else 0, turns=batches, posting_grace=self.posting_grace)
        with self._lock:
            self._held.update(t.id for t in tickets if t.id is not None)
            # A turn this process still works on must not get a second step: its step released
            # it in its last write and has not ended yet (with group commit, that release and
            # this claim can share a commit), or its claim ran out while the process stood
            # still. Its claim is handed back when that step ends (``_guarded``), so it is
            # claimed afresh from its row instead of waiting for the lease to run out.
            self._claimed_again.update(t.id for t in due if t.id in self._turns_held)
            due = [t for t in due if t.id not in self._turns_held]
            self._turns_held.update(t.id for t in due if t.id is not None)
        if sync:
            self._sync_backlog.extend(t for t in due if t.state == TurnState.QUEUED)
            due = [t for t in due if t.state != TurnState.QUEUED]
        steps: list[tuple[Callable[..., None], Any, bool]] = []
        for n in range(max(len(tickets), len(due))):
            if n < len(due):
                steps.append((turns.advance, due[n], True))
            if n < len(tickets):
                steps.append((conversation.sync_ticket, tickets[n], False))
        self._backlog.extend(steps)

    def housekeeping(self) -> None:
        if self.fatal is not None:
            return
        try:
            idle.close_idle_sessions(self)
            housekeeping.close_sessions(self)
            verdicts.expire(self)
            housekeeping.send_feedback(self)
        except UppzyAccessError as exc:
            self._set_fatal(exc)
        self._forget_old_text()

    def _forget_old_text(self) -> None:
        """Apply ``retention`` at most every ``RETENTION_EVERY`` seconds; each pass is bounded,
        and a pass that found a full batch comes back at the next housekeeping."""
        if self.config.retention is None or time.monotonic() < self._next_retention:
            return
        cutoff = utcnow() - timedelta(seconds=self.config.retention)
        forgotten = retention.forget_text(self.db, cutoff)
        if forgotten:
            log.info("retention: forgot the text of %d message(s) and turn(s) older than %s",
                     forgotten, cutoff.isoformat(timespec="seconds"))
        full = forgotten >= retention.BATCH
        self._next_retention = time.monotonic() + (0.0 if full else RETENTION_EVERY)

    # ----- events --------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Metrics, notifications and tests listen here instead of reaching into the steps."""
        self._listeners.append(listener)

    def emit(self, event: str, **fields: Any) -> None:
        """Tell listeners what happened. Events: ``http_call`` (client, endpoint, outcome,
        seconds), ``poll_ok``/``poll_failed``, ``adapter_paused``, ``turn_submitted``,
        ``turn_answered``, ``turn_failed``, ``turn_posted``, ``session_closed``,
        ``feedback_sent``, ``uppzy_refused``, ``turn_shadowed``, ``webhook`` (adapter,
        outcome), ``draft_adopted`` (a turn's draft judged: outcome, score), ``drafts_expired``
        (adapter, count). Turn events carry adapter, ticket_id, session_id, request_id and turn_id.
        A failing listener is logged, never allowed to stop the work.
        """
        for listener in self._listeners:
            try:
                listener(event, fields)
            except Exception:
                log.exception("event listener failed on %s", event)

    def _observe_http(self, client: str, endpoint: str, outcome: str, seconds: float) -> None:
        self.emit("http_call", client=client, endpoint=endpoint, outcome=outcome,
                  seconds=seconds)

    # ----- helpers used by the steps ---------------------------------------------------------
    def requester_key(self, email: str | None, requester_id: str | None) -> str | None:
        """The opaque per-requester key of per-user and per-channel session ids."""
        return sessions.requester_key(self._installation_key, email, requester_id)

    def site_for(self, adapter_name: str) -> str:
        return self.config.site_for(self.config.adapter(adapter_name))

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff, capped at ``engine.max_backoff``: a transient error
        never ends an item, so the cap is how late work resumes after an outage ends."""
        cap = self.config.engine.max_backoff
        ceiling = min(cap, BACKOFF_BASE * (2 ** min(30, max(0, attempt - 1))))
        return random.uniform(ceiling / 2, ceiling)

    def release_claim(self, turn_id: int | None, delay: float = 0.0) -> None:
        """Hand a turn back (due after ``delay``), if this instance still holds it."""
        turn_rows.release(self.db, turn_id, self.instance_id,
                          utcnow() + timedelta(seconds=delay))

    def in_flight(self) -> int:
        """Steps running now, on the pool or waiting on a sync chat."""
        with self._lock:
            return self._running + self._waiting

    def busy(self) -> bool:
        """Whether anything is still running or due soon (``run --once`` waits for this)."""
        with self._lock:
            if self._running or self._waiting or self._backlog or self._sync_backlog:
                return True
        left = claims.outstanding(self.db, list(self.adapters))
        if left.paused and not left.active and not left.closing and not left.feedback:
            return False  # only paused adapters' tickets are left; they wait for a human
        return bool(left.active or left.syncing or left.closing or left.feedback)

    def _start(self, fn: Callable[..., None], item: Any, uppzy: bool = False,
               wait: bool = False) -> None:
        """Run one step on the pool, or (``wait``: a sync chat) on a waiting thread of its own.

        Waiting threads are daemons: at a stop the process does not wait up to a minute for an
        answer; that question stays queued and is asked again after the restart.
        """
        with self._lock:
            if uppzy:
                self._uppzy_steps += 1
            if wait:
                self._waiting += 1
            else:
                self._running += 1
        try:
            if wait:
                threading.Thread(target=self._guarded, args=(fn, item, uppzy, wait),
                                 name="sync-chat", daemon=True).start()
            else:
                self._pool.submit(self._guarded, fn, item, uppzy, wait)
        except RuntimeError:  # shutting down; the row stays due for the next start
            self._finished(uppzy, wait)

    def _finished(self, uppzy: bool, wait: bool) -> None:
        with self._lock:
            if uppzy:
                self._uppzy_steps -= 1
            if wait:
                self._waiting -= 1
            else:
                self._running -= 1

    def _guarded(self, fn: Callable[..., None], item: Any, uppzy: bool, wait: bool) -> None:
        try:
            fn(self, item)
        except UppzyAccessError as exc:
            self._set_fatal(exc)
        except Exception:
            # A bug or a surprise payload must cost one item a retry, not the daemon its life.
            log.exception("step %s(%s) failed unexpectedly", fn.__name__,
                          getattr(item, "id", item))
            if fn in TURN_STEPS:
                self.release_claim(item.id, delay=self.backoff(3))
        finally:
            self._finished(uppzy, wait)
            with self._lock:
                held = self._held if fn is conversation.sync_ticket else self._turns_held
                held.discard(item.id)
                again = fn in TURN_STEPS and item.id in self._claimed_again
                self._claimed_again.discard(item.id)
            if again:
                self._hand_back_claimed_again(item.id)
        if not self._stopping:
            # Work-conserving: a freed worker takes the next due item now, not at the next tick
            # (with a 0.5 s tick, 8 workers would otherwise idle between ticks).
            try:
                self.dispatch()
            except Exception:
                log.exception("dispatch after a step failed; the next tick retries")

    def _hand_back_claimed_again(self, turn_id: int) -> None:
        """Release a turn a dispatch claimed while its step was still running (``_claim``);
        if the database is away, the claim expires as any other."""
        try:
            turn_rows.release(self.db, turn_id, self.instance_id, None)
        except DatabaseError as exc:
            log.warning("turn %d: could not hand back its claim (%s); it expires after "
                        "engine.lease_ttl", turn_id, type(exc).__name__)

    def _set_fatal(self, exc: UppzyAccessError) -> None:
        if self.fatal is None:
            log.critical("%s; stopping. Fix the setting and start again.", exc)
            self.fatal = exc
            self.emit("uppzy_refused", reason=str(exc))
