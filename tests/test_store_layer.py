"""The engine holds no SQL: every table, query, transaction and claim is the store's.

The engine decides; ``connector/store/`` reads and writes. The check reads the engine's source
with ``ast``: it fails on any import of the SQL libraries (at the top or inside a function), on
the store's transaction helpers, and on the calls that only a session or a connection answers.
The database handle itself (``Runtime.db``, made by ``store.db.make_engine``) may pass through
the engine: it is opaque there, handed to store functions and never used.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).parent.parent
ENGINE = ROOT / "connector" / "engine"

SQL_PACKAGES = ("sqlalchemy", "sqlmodel", "alembic", "sqlite3", "psycopg", "psycopg2")
# The store's transaction helpers, wherever they are reached from.
SCOPES = {"session_scope", "read_scope", "write_scope", "read_session"}
# Imported by these names from anywhere (a store module re-exporting them is no way around).
FORBIDDEN_IMPORTS = SCOPES | {
    "Session", "Connection", "select", "update", "insert", "delete", "text", "bindparam",
}
# Methods only a session, a connection or an engine has: a call to one means SQL in the engine.
FORBIDDEN_METHODS = {
    "exec", "execute", "exec_driver_sql", "scalar", "scalars", "flush", "commit", "rollback",
    "begin", "begin_nested", "connect", "dispose", "with_for_update", "execution_options",
}


def offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name.split(".")[0] in SQL_PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SQL_PACKAGES:
                found.append(f"{where} imports {node.module}")
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.Name) and node.id in SCOPES:
            found.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in SCOPES:
            found.append(f"{where} uses {node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in FORBIDDEN_METHODS:
            found.append(f"{where} calls .{node.func.attr}()")
    return found


def engine_offences(engine: Path) -> list[str]:
    return [line for path in sorted(engine.glob("*.py")) for line in offences(path)]


def test_the_engine_holds_no_sql() -> None:
    assert engine_offences(ENGINE) == []


def test_sql_in_the_engine_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "engine"
    shutil.copytree(ENGINE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    ingest = copy / "ingest.py"
    ingest.write_text(ingest.read_text() + (
        "\n\ndef late(engine):\n"
        "    from sqlmodel import select\n"
        "    with session_scope(engine.db) as db:\n"
        "        return db.exec(select(TicketRecord)).all()\n"))
    (copy / "extra.py").write_text("import sqlalchemy.exc\nfrom connector.store.db import "
                                   "read_scope\n\n\ndef f(c):\n    c.execute('SELECT 1')\n")
    assert engine_offences(copy) == [
        "extra.py:1 imports sqlalchemy.exc",
        "extra.py:2 imports read_scope",
        "extra.py:6 calls .execute()",
        f"ingest.py:{_line(ingest, 'from sqlmodel')} imports sqlmodel",
        f"ingest.py:{_line(ingest, 'from sqlmodel')} imports select",
        f"ingest.py:{_line(ingest, 'session_scope')} uses session_scope",
        f"ingest.py:{_line(ingest, 'db.exec')} calls .exec()",
    ]


def _line(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)
