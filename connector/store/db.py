"""Database engine set-up and migrations.

SQLite is the embedded default: WAL so readers never wait for the writer, a busy timeout so
threads queue instead of failing, and ``BEGIN IMMEDIATE`` so a transaction that reads then writes
takes the write lock up front instead of deadlocking with another one doing the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from connector.store.plain import say

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x55505A59  # "UPZY": the advisory lock key that serialises migrations
READ_ONLY = "connector_read_only"

Database: TypeAlias = Engine
"""The handle the commands and the daemon hold and pass back into store functions: they know no
SQL (docs/architecture.md), so they never query through it themselves."""

DatabaseError = SQLAlchemyError
"""Any failure of the database (unreachable, refused, a broken statement): the one error the
layers above the store catch, to report an outage instead of failing, without importing SQL."""


class StoreError(SQLAlchemyError):
    """A database failure that the engine handles as an outcome (a read retried later, claims
    left to expire), since it must not depend on the driver library. Still a
    ``SQLAlchemyError``, with the driver's ``orig``, so whoever handled database errors above
    the engine (the CLI, the scheduler) still does; ``kind`` names the original error for logs
    and ``status`` (never its parameters, which hold customer text)."""

    def __init__(self, cause: SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.kind = type(cause).__name__
        self.orig = getattr(cause, "orig", None)


RACE_STATES = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


def lost_a_race(exc: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back to end a deadlock or a serialization
    conflict with another one: nothing was written, and running it again is the remedy
    PostgreSQL's documentation gives."""
    exc = getattr(exc, "cause", exc)
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RACE_STATES


class Conflict(StoreError):
    """A uniqueness rule refused the write: another writer stored the same thing first."""


@contextmanager
def reported() -> Iterator[None]:
    """Turn a database failure into ``StoreError`` (``Conflict`` for a uniqueness clash)."""
    try:
        yield
    except StoreError:
        raise
    except IntegrityError as exc:
        raise Conflict(exc) from exc
    except SQLAlchemyError as exc:
        raise StoreError(exc) from exc


def make_engine(url: str) -> Engine:
    """The database engine. ``hide_parameters``: a failing statement's error names the statement
    but never its values, which hold customer text and tokens."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20,
            max_overflow=20, hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True,
                         hide_parameters=True)


def _sqlite_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    dbapi_connection.isolation_level = None  # let the "begin" hook decide how to begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
    # A read that decides nothing on its own need not queue behind the writer. Said on the
    # driver's cursor: through SQLAlchemy's execution this one word cost as much as a
    # statement of the step (store/plain.py), and every transaction says it.
    deferred = connection.get_execution_options().get(READ_ONLY, False)
    say(connection, "BEGIN" if deferred else "BEGIN IMMEDIATE")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def joined_session(connection: Connection) -> Iterator[Session]:
    """An ORM session inside a transaction that ``connection``'s owner commits (the group
    writer's, ``store/writer.py``): flushed at the end, it never commits that transaction, and
    a failure is left to the owner, which rolls back the whole of it."""
    with Session(bind=connection, join_transaction_mode="rollback_only",
                 expire_on_commit=False) as session:
        yield session
        session.flush()


@contextmanager
def read_scope(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot for checks: on SQLite a deferred transaction, so checks run in
    parallel with the writer instead of taking its lock (``session_scope`` takes it up front)."""
    with engine.connect() as connection:
        connection.execution_options(**{READ_ONLY: True})
        try:
            yield connection
        finally:
            connection.rollback()


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """``read_scope`` for reads that load rows as model instances: the engine decides on
    them, then writes in a transaction of its own that re-checks in SQL what must still hold."""
    with read_scope(engine) as connection, Session(connection) as session:
        yield session


@contextmanager
def write_scope(engine: Engine) -> Iterator[Connection]:
    """One Core transaction for a step's outcome: cheaper than an ORM session for a few
    UPDATEs, committed on success and rolled back on any exception."""
    with engine.begin() as connection:
        yield connection


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call at every start."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Instances starting together on a fresh database would race to create the same
            # tables; the first migrates, the others wait here and then find nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def open_migrated(url: str) -> Engine:
    """The engine of a database brought to the newest schema (created if need be), for a
    command that may migrate; its connections are released when the migration fails."""
    engine = make_engine(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
