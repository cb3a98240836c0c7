"""Group commit (``connector/store/writer.py``): concurrent writes share transactions, each
caller returns only once its write is durable, and one bad write costs only its own caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from test_postgres import pg_url  # noqa: F401  (a fixture)

from connector.store.db import make_engine
from connector.store.writer import GroupWriter


def _prepare(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, owner TEXT)"))
    return engine


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Engine]:
    engine = _prepare(make_engine(f"sqlite:///{tmp_path}/w.db"))
    yield engine
    engine.dispose()


def _insert(n: int):
    def run(connection: Connection) -> int:
        connection.execute(text("INSERT INTO item (id, owner) VALUES (:id, 'a')"), {"id": n})
        return n
    return run


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM item")).scalar_one()


def _held_open(writer: GroupWriter) -> tuple[threading.Event, threading.Thread]:
    """Occupy the writer with one write that waits, so the next ones queue into one batch."""
    release, entered = threading.Event(), threading.Event()

    def slow(connection: Connection) -> None:
        entered.set()
        release.wait(10)
        connection.execute(text("INSERT INTO item (id, owner) VALUES (0, 'slow')"))

    thread = threading.Thread(target=writer.write, args=(slow,))
    thread.start()
    assert entered.wait(10)
    return release, thread


def _queued(writer: GroupWriter, runs: list, pool: ThreadPoolExecutor) -> list:
    assert pool._max_workers >= len(runs)  # each queued write holds a thread until committed
    before = writer.writes
    futures = [pool.submit(writer.write, run) for run in runs]
    # Each submitted write waits for a batch once its thread called write(); give the
    # pool a moment to get every call there before the held write lets the writer go on.
    for _ in range(500):
        if writer.waiting() >= len(runs):
            break
        threading.Event().wait(0.01)
    assert writer.waiting() == len(runs)
    assert writer.writes == before
    return futures


def test_concurrent_writes_share_transactions_and_all_commit(sqlite_db: Engine):
    begins: list[int] = []
    event.listen(sqlite_db, "begin", lambda _c: begins.append(1))
    writer = GroupWriter(sqlite_db)
    try:
        release, slow = _held_open(writer)
        with ThreadPoolExecutor(40) as pool:
            futures = _queued(writer, [_insert(n) for n in range(1, 41)], pool)
            release.set()
            assert sorted(f.result(10) for f in futures) == list(range(1, 41))
        slow.join(10)
    finally:
        writer.close()
    # The held write's transaction, then one for the 40 that queued behind it.
    assert len(begins) == 2
    assert _count(sqlite_db) == 41
    assert writer.batches == 2 and writer.writes == 41


def test_a_write_returns_only_once_it_is_committed(sqlite_db: Engine):
    writer = GroupWriter(sqlite_db)
    try:
        for n in range(1, 6):
            writer.write(_insert(n))
            assert _count(sqlite_db) == n  # another connection sees it: committed
    finally:
        writer.close()


def test_a_write_with_nobody_to_share_its_batch_commits_on_its_own_thread(sqlite_db: Engine):
    """No hand-off to another thread and back when there is nobody to wait for."""
    writer = GroupWriter(sqlite_db)
    try:
        assert writer.write(lambda _c: threading.get_ident()) == threading.get_ident()
    finally:
        writer.close()


def test_the_lead_passes_to_a_waiting_write_and_close_waits_for_it(sqlite_db: Engine):
    """Writes that came while a batch was committing are committed by one of their own
    callers; close returns only once they are."""
    writer = GroupWriter(sqlite_db)
    release, slow = _held_open(writer)
    committers: set[int] = set()

    def insert_noting_thread(n: int):
        def run(connection: Connection) -> int:
            committers.add(threading.get_ident())
            return _insert(n)(connection)
        return run

    with ThreadPoolExecutor(8) as pool:
        futures = _queued(writer, [insert_noting_thread(n) for n in range(1, 9)], pool)
        closing = threading.Thread(target=writer.close)
        closing.start()
        release.set()
        closing.join(10)
        assert not closing.is_alive()
        # Close waited for the batch that was waiting: committed by the time it returned
        # (its callers may still be on their way out of ``write``).
        assert _count(sqlite_db) == 9
        assert sorted(f.result() for f in futures) == list(range(1, 9))
    slow.join(10)
    # One of the pool's threads committed the eight: not the held write's, not this one.
    assert len(committers) == 1 and committers.isdisjoint({slow.ident, threading.get_ident()})


def test_one_bad_write_fails_alone_and_the_rest_of_its_batch_commits(sqlite_db: Engine):
    writer = GroupWriter(sqlite_db)
    try:
        release, slow = _held_open(writer)
        with ThreadPoolExecutor(8) as pool:
            runs = [_insert(1), _insert(2), _insert(0), _insert(3)]  # 0: the held write's id
            futures = _queued(writer, runs, pool)
            release.set()
            assert futures[0].result(10) == 1 and futures[1].result(10) == 2
            assert futures[3].result(10) == 3
            with pytest.raises(IntegrityError):
                futures[2].result(10)
        slow.join(10)
    finally:
        writer.close()
    assert _count(sqlite_db) == 4


def test_a_failing_database_fails_every_write_of_the_batch_once(sqlite_db: Engine):
    """A database fault is not retried write by write (against a database that does not answer,
    that would multiply the wait by the batch size): each caller gets the error once."""
    writer = GroupWriter(sqlite_db)
    calls: list[int] = []

    def broken(connection: Connection) -> None:
        calls.append(1)
        connection.execute(text("INSERT INTO missing_table VALUES (1)"))  # OperationalError

    try:
        release, slow = _held_open(writer)
        with ThreadPoolExecutor(4) as pool:
            futures = _queued(writer, [_insert(1), broken, _insert(2)], pool)
            release.set()
            for future in futures:
                with pytest.raises(Exception, match="missing_table"):
                    future.result(10)
        slow.join(10)
    finally:
        writer.close()
    assert calls == [1]
    assert _count(sqlite_db) == 1  # only the held write, in its own transaction


def test_writes_after_close_still_commit(sqlite_db: Engine):
    writer = GroupWriter(sqlite_db)
    writer.close()
    assert writer.write(_insert(7)) == 7
    assert _count(sqlite_db) == 1


def test_concurrent_writes_on_postgresql(pg_url: str):  # noqa: F811
    engine = _prepare(make_engine(pg_url))
    writer = GroupWriter(engine)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(writer.write, [_insert(n) for n in range(1, 201)]))
        assert results == list(range(1, 201))
        assert _count(engine) == 200
        assert writer.batches < 200  # some writes shared a transaction
    finally:
        writer.close()
        engine.dispose()


def test_a_read_whose_ticket_is_gone_writes_nothing_and_spares_its_batch(tmp_path: Path):
    """A conversation read's outcome goes through the writer too. When its ticket row went
    away meanwhile (retention), none of its writes may stay, and the read it shares a batch
    with must still commit whole."""
    from sqlmodel import Session, select

    from connector.store.conversation import Changes, record_read
    from connector.store.db import open_migrated
    from connector.store.messages import NewMessage
    from connector.store.models import MessageRecord, TicketRecord, utcnow

    db = _prepare(open_migrated(f"sqlite:///{tmp_path}/c.db"))
    with Session(db) as session:
        ticket = TicketRecord(adapter="zd", external_id="7", change_seq=3, sync_after=utcnow())
        session.add(ticket)
        session.commit()
        row_id = ticket.id
    assert row_id is not None

    def changes(ticket_id: str, message_id: str) -> Changes:
        now = utcnow()
        return Changes("zd", ticket_id, now, [NewMessage(message_id, "customer", True, False,
                                                         now, "Where is my order?")])

    writer = GroupWriter(db)
    try:
        release, slow = _held_open(writer)
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(record_read, writer, row_id + 1, 1, {}, changes("8", "gone-1")),
                pool.submit(record_read, writer, row_id, 3, {"status": "open"},
                            changes("7", "kept-1")),
            ]
            for _ in range(500):
                if writer.waiting() >= 2:
                    break
                threading.Event().wait(0.01)
            assert writer.waiting() == 2  # both in the next batch
            release.set()
            assert futures[0].result(10) is None
            assert futures[1].result(10) is not None
        slow.join(10)
    finally:
        writer.close()
    with Session(db) as session:
        stored = session.exec(select(MessageRecord.external_id)).all()
        ticket = session.get(TicketRecord, row_id)
    assert stored == ["kept-1"]
    assert ticket is not None and ticket.status == "open" and not ticket.needs_sync
    db.dispose()


def test_batches_in_a_row_share_one_connection(sqlite_db: Engine):
    """The writer keeps its connection between batches instead of taking one from the pool
    for each (bench/README: a tenth of the daemon's Python time)."""
    checkouts = []
    event.listen(sqlite_db, "checkout", lambda *_: checkouts.append(1))
    writer = GroupWriter(sqlite_db)
    try:
        for n in range(1, 21):
            writer.write(_insert(n))
        assert writer.batches == 20 and len(checkouts) == 1
    finally:
        writer.close()
    assert sqlite_db.pool.checkedout() == 0  # type: ignore[attr-defined]  # given back at close


def _kill_backend_of(writer: GroupWriter, engine: Engine) -> None:
    pid = writer.write(lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
    with engine.connect() as killer:
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.commit()


def test_a_connection_lost_while_idle_is_replaced_before_the_next_batch(
        pg_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """After a quiet spell the writer's connection goes back to the pool, whose check finds
    a server-side end (a restart, an idle timeout): the next write does not fail for it."""
    monkeypatch.setattr("connector.store.writer.IDLE_RETURN", 0.2)
    engine = _prepare(make_engine(pg_url))
    writer = GroupWriter(engine)
    try:
        _kill_backend_of(writer, engine)
        time.sleep(0.4)
        assert writer.write(_insert(1)) == 1
    finally:
        writer.close()
        engine.dispose()


def test_a_connection_lost_between_busy_batches_fails_one_batch_only(pg_url: str):  # noqa: F811
    engine = _prepare(make_engine(pg_url))
    writer = GroupWriter(engine)
    try:
        _kill_backend_of(writer, engine)
        with pytest.raises(OperationalError):
            writer.write(_insert(1))
        assert writer.write(_insert(2)) == 2  # on a fresh connection
        assert _count(engine) == 1
    finally:
        writer.close()
        engine.dispose()
