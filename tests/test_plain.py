"""Plain statements on the driver's cursor (``store/plain.py``) behave as SQLAlchemy's own
execution did: same conversions both ways, inside the caller's transaction, same errors.

Each case runs on SQLite and on the real PostgreSQL server (a fresh schema, see ``pg_url``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlmodel import Session
from test_postgres import pg_url  # noqa: F401  (a fixture)

from connector.store import tickets
from connector.store.db import Conflict, make_engine, migrate, reported, session_scope
from connector.store.models import (
    ChatSession,
    SessionState,
    TicketRecord,
    Turn,
    TurnState,
    utcnow,
)
from connector.store.plain import Inserting, Plain, bound, instance, selecting

TURNS = Turn.__table__  # type: ignore[attr-defined]
SESSIONS = ChatSession.__table__  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/plain.db" if request.param == "sqlite" else \
        request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _turn(**values: object) -> dict[str, object]:
    now = utcnow()
    return {"adapter": "a", "ticket_id": "1", "session_id": "a-1", "site_id": "s",
            "question": "q", "last_message_id": "m1", "last_message_at": now, **values}


def test_an_insert_takes_the_columns_defaults_and_returns_the_row_as_the_orm_loads_it(db):
    before = utcnow()
    with db.begin() as connection:
        written = Inserting(TURNS, returning=True).run(connection, _turn(claim_owner="me"))
    turn = instance(Turn, written.keys, written.one())
    assert turn.state == TurnState.QUEUED and turn.attempts == 0 and turn.polls == 0
    assert turn.claim_owner == "me" and turn.request_id is None
    with Session(db) as session:
        loaded = session.get(Turn, turn.id)
        assert loaded is not None
        for column in TURNS.columns:
            assert getattr(turn, column.name) == getattr(loaded, column.name), column.name
    assert loaded.created_at >= before.replace(tzinfo=loaded.created_at.tzinfo)


def test_a_new_ticket_row_built_without_validation_is_stored_as_the_validated_model_would_be(db):
    """A feed page's new tickets skip pydantic (``plain.new``): same defaults, same row."""
    before = utcnow()
    fast = tickets.new_record("a", "7")
    slow = TicketRecord(adapter="a", external_id="7")
    for name in TicketRecord.model_fields:
        if name not in ("sync_after", "first_seen_at"):  # clock factories, called for each
            assert getattr(fast, name) == getattr(slow, name), name
    assert fast.sync_after >= before and fast.first_seen_at >= before
    fast.tags, fast.known_messages = "vip", 2  # a decision changes it like any row
    report = tickets.Report(fast, {}, due=True, new=True, seen={})
    with Session(db) as session:
        assert tickets.save_reports(session, "a", [report], verify=True)
        session.commit()
        stored = tickets.rows_in(session, "a", ["7", "8"])
    assert list(stored) == ["7"]
    row = stored["7"]
    assert (row.tags, row.known_messages, row.change_seq, row.needs_sync) == ("vip", 2, 1, True)
    assert row.status == "" and row.session_seq == 1 and row.id is not None
    assert abs((row.first_seen_at - fast.first_seen_at).total_seconds()) < 1e-3


def test_typed_parameters_and_results_convert_as_the_orm_does(db):
    due = utcnow() + timedelta(minutes=5)
    with db.begin() as connection:
        turn_id = Inserting(TURNS, returning=True).run(connection, _turn()).one()[0]
        changed = bound("UPDATE turn SET next_attempt_at = :next_attempt_at, state = :state "
                        "WHERE id = :turn_id", TURNS, ["next_attempt_at", "state"]).run(
            connection, {"next_attempt_at": due, "state": TurnState.SUBMITTED,
                         "turn_id": turn_id})
        assert changed.rowcount == 1
    with Session(db) as session:
        loaded = session.get(Turn, turn_id)
        assert loaded is not None and loaded.state == TurnState.SUBMITTED
        orm_due = loaded.next_attempt_at
    with db.connect() as connection:
        found = selecting(TURNS, "WHERE id = :id").run(connection, {"id": turn_id})
        turn = instance(Turn, found.keys, found.one())
    assert turn.next_attempt_at == orm_due  # same type and value as the ORM's load
    assert turn.state == TurnState.SUBMITTED


def test_a_statement_that_begins_a_connection_runs_in_its_transaction(db):
    with db.begin() as connection:
        Inserting(SESSIONS).run(connection, {"session_id": "s1", "adapter": "a",
                                             "site_id": "s"})
    close = Plain(text("UPDATE chat_session SET state = 'closed' WHERE session_id = :id"))
    with db.connect() as connection:
        assert close.run(connection, {"id": "s1"}).rowcount == 1  # first statement: begins
        assert connection.in_transaction()
        connection.rollback()
    with Session(db) as session:
        chat = session.get(ChatSession, "s1")
        assert chat is not None and chat.state == SessionState.OPEN  # undone: no autocommit


def test_many_rows_in_one_call_and_a_percent_sign_in_the_text(db):
    new = Inserting(SESSIONS)
    with db.begin() as connection:
        assert new.run_many(connection, [{"session_id": f"s{n}", "adapter": "a",
                                          "site_id": "s"} for n in range(3)]) == 3
        like = Plain(text("SELECT count(*) FROM chat_session "
                          "WHERE session_id LIKE 's%' AND adapter = :adapter"))
        assert like.run(connection, {"adapter": "a"}).scalar() == 3


def test_a_driver_error_is_raised_as_sqlalchemys_and_the_store_reports_a_conflict(db):
    new = Inserting(SESSIONS)
    with db.begin() as connection:
        new.run(connection, {"session_id": "dup", "adapter": "a", "site_id": "s"})
    with pytest.raises(Conflict) as caught, reported(), session_scope(db) as session:
        new.run(session, {"session_id": "dup", "adapter": "a", "site_id": "secret-text"})
    assert isinstance(caught.value.cause, IntegrityError)
    assert "secret-text" not in str(caught.value)  # parameters are never in the message
    with pytest.raises(DBAPIError), db.connect() as connection:  # as SQLAlchemy maps it
        Plain(text("SELECT no_such_column FROM turn")).run(connection)


def test_a_lost_postgresql_connection_is_invalidated_and_the_next_one_works(pg_url):  # noqa: F811
    engine = make_engine(pg_url)
    try:
        migrate(engine)
        probe = Plain(text("SELECT count(*) FROM turn"))
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            connection.rollback()
            with engine.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(OperationalError) as caught:
                probe.run(connection)
            assert caught.value.connection_invalidated
        with engine.connect() as connection:  # a new connection, not the dead one
            assert probe.run(connection).scalar() == 0
    finally:
        engine.dispose()


def test_a_begin_that_meets_a_held_sqlite_lock_fails_as_sqlalchemys_error(tmp_path):
    """``BEGIN IMMEDIATE`` goes to the driver's cursor too (``store.db``); the group writer
    tells a database failure from one bad write by SQLAlchemy's error class."""
    engine = make_engine(f"sqlite:///{tmp_path}/locked.db")
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        migrate(engine)
        holder.execute("BEGIN IMMEDIATE")
        with engine.connect() as connection:
            connection.connection.driver_connection.execute("PRAGMA busy_timeout=50")
            with pytest.raises(OperationalError):
                connection.begin()
    finally:
        holder.close()
        engine.dispose()


def test_a_single_statement_read_sees_committed_rows_beside_an_open_write(db):
    """``Plain.read`` runs outside any transaction of SQLAlchemy's: it neither waits for a
    writer (SQLite's write lock held) nor sees what that writer has not committed, and leaves
    no transaction open on the pooled connection."""
    new = Inserting(SESSIONS)
    count = Plain(text("SELECT count(*) FROM chat_session WHERE adapter = :adapter"))
    with db.begin() as connection:
        new.run(connection, {"session_id": "s1", "adapter": "a", "site_id": "s"})
    with db.begin() as writer:  # holds the write lock (BEGIN IMMEDIATE on SQLite)
        new.run(writer, {"session_id": "s2", "adapter": "a", "site_id": "s"})
        assert count.read(db, {"adapter": "a"}).scalar() == 1
    assert count.read(db, {"adapter": "a"}).scalar() == 2
    assert db.pool.checkedout() == 0  # type: ignore[attr-defined]
