"""Group commit: the outcomes of concurrent steps written by one thread, one transaction a batch.

Why: each step of a turn ends in a short write (asked, answered, posting, posted). Written in a
transaction of its own, every one of them paid a BEGIN IMMEDIATE, a COMMIT and, on SQLite, a
turn at the single write lock, which the other workers queued for. One writer that takes every
write waiting at that moment into one transaction pays those once per batch, and nobody queues
for the lock but the writer. Conversation reads and claims write through it too.

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
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 128  # writes in one transaction: bounds how long the lock is held
IDLE_RETURN = 1.0  # seconds without a batch after which the writer's connection goes back


@dataclass
class _Write:
    run: Callable[[Connection], Any]
    done: Future[Any] = field(default_factory=Future)


class GroupWriter:
    """One writer thread over ``engine``; ``write`` is safe to call from any thread."""

    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._connection: Connection | None = None  # the writer thread's own, kept open
        self._used_at = 0.0  # when ``_connection`` last ran a batch (monotonic)
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()
        # Transactions committed or attempted, and the writes in them: bench/statements.py
        # prints writes per commit.
        self.batches = 0
        self.writes = 0

    def write(self, run: Callable[[Connection], T]) -> T:
        """Run ``run`` in the next group transaction; return its result once that committed.

        After ``close`` (a step still finishing during shutdown), the write runs alone, so a
        late outcome is recorded rather than dropped.
        """
        if self._closed.is_set():
            return self._alone(run)
        item = _Write(run)
        self._queue.put(item)
        return item.done.result()

    def close(self, timeout: float = 5.0) -> None:
        """Finish the writes already queued, then stop the thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first] if first is not None else []
            stopping = first is None
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                self._commit(batch)
            if stopping and self._queue.empty():
                self._drop_connection()
                return

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
                item.done.set_exception(exc)
            return
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].done.set_exception(exc)
                return
            log.debug("a batch of %d writes failed (%s); writing each alone", len(batch),
                      type(exc).__name__)
            for item in batch:
                try:
                    item.done.set_result(self._alone(item.run))
                except BaseException as alone:
                    item.done.set_exception(alone)
            return
        for item, result in zip(batch, results, strict=True):
            item.done.set_result(result)

    def _held_connection(self) -> Connection:
        """The writer's connection, kept from batch to batch: checking one out of the pool
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
