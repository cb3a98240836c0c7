"""Group commit: the outcomes of concurrent steps written in one transaction a batch.

Why: each step of a turn ends in a short write (asked, answered, posting, posted). Written in a
transaction of its own, every one of them paid a BEGIN IMMEDIATE, a COMMIT and, on SQLite, a
turn at the single write lock, which the other workers queued for. Taking every write waiting at
that moment into one transaction pays those once per batch, and nobody queues for the lock but
the one committing. Conversation reads and claims write through it too.

Who commits: the caller that finds nobody committing becomes the leader and commits the writes
waiting, its own first; the callers that come meanwhile wait, and when the leader's batch is
done the first of them leads the next batch. A dedicated writer thread did the same with two
thread hand-offs per write (the caller waking the writer, the writer waking the caller), which
cost more than the write when it had nobody to share its batch with; a leader alone with its
write commits it on its own thread, and under load there is one hand-off per batch besides
waking its members.

What may be batched, and what must not:

- A caller of ``write`` waits until the transaction holding its write has committed: a write
  that must be durable before a remote side effect (the fence before asking or posting, the
  ``posting`` mark before a post) is durable when ``write`` returns, exactly as with a
  transaction of its own. Nothing is written behind the caller's back, so the crash guarantees
  are unchanged; what changes is only that other callers' writes share the commit.
- Only self-contained writes go through here: each checks what it depends on in SQL
  (``WHERE claim_owner = :owner``, a change sequence, a state) and reports the outcome to its
  own caller only. A write whose result decides nothing for the others may share their
  transaction, in whatever order the batch holds them.
- That includes a conversation read's outcome (``store.conversation.record_read``) and a
  dispatch's claims (``store.claims.claim_work``), which read and then write: within the
  batch they see the writes before them, which is what they would see committed a moment
  later. Neither waits on a row lock of another instance for long: claims skip locked rows
  (``SKIP LOCKED``), and a read locks its own ticket's turns, sessions and row (its read
  claim keeps other readers of the ticket off) in the order a step's outcome takes them.
- Not here: anything that waits on a remote call or on a lock held by a slow holder (a
  migration, an advisory lock), which would hold every step's outcome; and heartbeats and
  releases at a stop, which must not queue behind the steps they outlive.

A batch that fails because one write in it is at fault (a constraint, a bad value, a bug) is
rolled back and each of its writes is run again alone, so one bad write costs only its own
caller (a write may also raise on purpose to undo itself: ``record_read`` for a ticket row
that is gone). A failure of the database itself (connection lost, lock timeout, deadlock) is
given to every caller of the batch, as each would have met it alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 128  # writes in one transaction: bounds how long the lock is held
IDLE_RETURN = 1.0  # seconds without a batch after which the leaders' connection goes back


class _Write:
    """One caller's write; its ``wake`` lock is held until the write is done or the caller is
    to lead the next batch."""

    __slots__ = ("error", "lead", "result", "run", "wake")

    def __init__(self, run: Callable[[Connection], Any]) -> None:
        self.run = run
        self.result: Any = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()

    def done(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.wake.release()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupWriter:
    """Group commit over ``engine``; ``write`` is safe to call from any thread."""

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._connection: Connection | None = None  # the leaders' own, kept open
        self._used_at = 0.0  # when ``_connection`` last ran a batch (monotonic)
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._led = threading.Condition(self._lock)  # notified when a leader steps down
        self._pending: list[_Write] = []  # waiting for a batch, oldest first
        self._leading = False  # a caller is committing a batch
        self._closed = False
        # Transactions committed or attempted, and the writes in them: bench/statements.py
        # prints writes per commit.
        self.batches = 0
        self.writes = 0

    def write(self, run: Callable[[Connection], T]) -> T:
        """Run ``run`` in the next group transaction; return its result once that committed.

        After ``close`` (a step still finishing during shutdown), the write runs alone, so a
        late outcome is recorded rather than dropped.
        """
        item = _Write(run)
        with self._lock:
            closed = self._closed
            if not closed:
                self._pending.append(item)
                item.lead, self._leading = not self._leading, True
        if closed:
            return self._alone(run)
        if not item.lead:
            item.wake.acquire()  # done, or handed the lead
        if item.lead:
            self._lead()
        return item.outcome()  # type: ignore[no-any-return]

    def waiting(self) -> int:
        """Writes waiting for a batch (not counting the one being committed)."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the writes already waiting, then give the connection back; later writes run
        alone."""
        with self._lock:
            self._closed = True
            if not self._led.wait_for(lambda: not self._leading, timeout):
                return  # a batch still running keeps the connection; it goes with the engine
            self._drop_connection()

    def _lead(self) -> None:
        """Commit the waiting writes (the caller's is first), then hand the lead to the first
        write that came meanwhile, or step down."""
        with self._lock:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._pending:
                    self._pending[0].lead = True
                    self._pending[0].wake.release()
                else:
                    self._leading = False
                    self._led.notify_all()

    def _commit(self, batch: list[_Write]) -> None:
        self.batches += 1
        self.writes += len(batch)
        try:
            connection = self._held_connection()
            with connection.begin():
                results = [item.run(connection) for item in batch]
        except (OperationalError, InterfaceError) as exc:  # the database, not one write
            self._drop_connection()  # maybe lost: the next batch starts on a fresh one
            for item in batch:
                item.done(error=exc)
            return
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].done(error=exc)
                return
            log.debug("a batch of %d writes failed (%s); writing each alone", len(batch),
                      type(exc).__name__)
            for item in batch:
                try:
                    item.done(self._alone(item.run))
                except BaseException as alone:
                    item.done(error=alone)
            return
        for item, result in zip(batch, results, strict=True):
            item.done(result)

    def _held_connection(self) -> Connection:
        """The leaders' connection, kept from batch to batch: checking one out of the pool
        and back for every batch cost a tenth of the daemon's Python time (bench/README).
        After a quiet second it goes back first, so the pool's check of a connection taken
        out (``pool_pre_ping`` on PostgreSQL) still catches a server that restarted while we
        were idle."""
        now = time.monotonic()
        if self._connection is not None and now - self._used_at > IDLE_RETURN:
            self._drop_connection()
        if self._connection is None:
            self._connection = self._engine.connect()
        self._used_at = now
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # a lost connection may fail to close; it is gone either way
                log.debug("closing the writer's connection failed", exc_info=True)
            self._connection = None

    def _alone(self, run: Callable[[Connection], T]) -> T:
        with self._engine.begin() as connection:
            return run(connection)
