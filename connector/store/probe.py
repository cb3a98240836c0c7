"""What an operator's command can learn about the database without changing it.

``connector check`` and ``connector status`` must never create a database (a typo in the URL
would otherwise leave an empty SQLite file behind and report it as fine), so they look before
they connect: a SQLite file that does not exist yet is reported as such, with whether its folder
would let the daemon create it. Every failure becomes one line naming ``database.url``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from connector.core.errors import DatabaseUnreachable, DatabaseUnusable
from connector.store.db import MIGRATIONS, current_revision, make_engine


@dataclass(frozen=True)
class DatabaseState:
    exists: bool  # False: a SQLite file the first run will create
    revision: str | None
    head: str
    writable: bool

    @property
    def current(self) -> bool:
        return self.revision == self.head


def head_revision() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory or other databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or \
            parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def open_existing(url: str) -> Engine:
    """An engine for a database that must already exist (read-only commands)."""
    path = _checked_url(url)
    if path is not None and not path.exists():
        raise DatabaseUnusable(f"no database at {path}: the daemon has not run with this "
                               "config yet (or database.url points elsewhere)")
    return _engine(url, server=path is None)


def inspect_database(url: str) -> DatabaseState:
    """Connect (never create), and say the schema's revision and whether we may write."""
    path = _checked_url(url)
    head = head_revision()
    if path is not None and not path.exists():
        folder = path.resolve().parent
        if not folder.is_dir():
            raise DatabaseUnusable(f"the folder {folder} does not exist")
        return DatabaseState(False, None, head, os.access(folder, os.W_OK))
    engine = _engine(url, server=path is None)
    try:
        revision = current_revision(engine)
        if path is not None:
            writable = os.access(path, os.W_OK) and os.access(path.resolve().parent, os.W_OK)
        else:
            with engine.connect() as connection:
                writable = bool(connection.execute(text(
                    "SELECT has_schema_privilege(current_schema(), 'CREATE')")).scalar())
    except SQLAlchemyError as exc:
        raise diagnose(exc, server=path is None) from None
    finally:
        engine.dispose()
    return DatabaseState(True, revision, head, writable)


def _checked_url(url: str) -> Path | None:
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise DatabaseUnusable(
            f"{_scheme(url)!r} is not a database URL this connector can use (expected "
            "sqlite:///path/file.db or postgresql+psycopg://user@host/db)") from None
    return sqlite_path(url)


def _engine(url: str, *, server: bool) -> Engine:
    try:
        engine = make_engine(url)
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise diagnose(exc, server=server) from None
    return engine


UNREACHABLE_STATES = {None, "57P03"}  # no answer at all; "cannot connect now" (starting up)


def diagnose(exc: SQLAlchemyError, *, server: bool) -> DatabaseUnusable:
    """The error for ``exc``: a database server that did not answer is ``DatabaseUnreachable``
    (the driver gives no SQLSTATE when the connection itself failed, or 57P03 while the server
    starts); a refused login, a missing database or a bad file is the setting's fault."""
    exc = getattr(exc, "cause", exc)  # a StoreError: what the driver said
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if server and isinstance(exc, OperationalError) and (
            state in UNREACHABLE_STATES or str(state).startswith("08")):
        return DatabaseUnreachable(_cause(exc))
    return DatabaseUnusable(_cause(exc))


def _scheme(url: str) -> str:
    return url.partition("://")[0] or url[:20]


def _cause(exc: SQLAlchemyError) -> str:
    """The driver's own reason, first line only: host and port are in it, never the password
    (the URL is not repeated)."""
    original = getattr(exc, "orig", None) or exc
    line = str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
    return line[:300]
