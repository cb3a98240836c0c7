"""``connector/cli/`` and ``connector/daemon/`` know no SQL (docs/architecture.md, the layers
table): every query, claim and transaction they need is a function of ``connector/store/``.

The import rules of ``test_layers.py`` cannot see this (SQLAlchemy is not one of our layers), so
the modules are read with ``ast``: importing ``sqlalchemy`` or ``sqlmodel`` (even inside a
function or under ``TYPE_CHECKING``), naming one of the store's transaction scopes, or calling
a statement or connection method is a query that belongs in the store.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("connector/cli", "connector/daemon")
SQL_PACKAGES = {"sqlalchemy", "sqlmodel"}
SCOPES = {"session_scope", "read_scope", "write_scope"}
# Run a statement (``exec``, ``execute``) or open a transaction or connection (``begin``,
# ``connect``) on a database handle.
SQL_CALLS = {"exec", "execute", "begin", "connect"}


def sql_uses(source: str) -> list[str]:
    """Each place in ``source`` that reaches the database without a store function, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {alias.name}") for alias in node.names
                      if alias.name.split(".")[0] in SQL_PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SQL_PACKAGES:
                found.append((node.lineno, f"from {node.module} import ..."))
            found += [(node.lineno, f"imports {alias.name}") for alias in node.names
                      if alias.name in SCOPES]
        elif isinstance(node, ast.Name) and node.id in SCOPES:
            found.append((node.lineno, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr in SCOPES:
            found.append((node.lineno, f"uses .{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in SQL_CALLS:
            found.append((node.lineno, f"calls .{node.func.attr}()"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def offenders(root: Path) -> list[str]:
    return [f"{path.relative_to(root)}:{use}"
            for package in PACKAGES for path in sorted((root / package).glob("*.py"))
            for use in sql_uses(path.read_text())]


def test_cli_and_daemon_hold_no_sql() -> None:
    assert offenders(ROOT) == []


def test_a_query_in_the_cli_or_daemon_is_caught() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from connector.store.db import session_scope\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy import Engine\n"
        "def count(engine):\n"
        "    import sqlmodel\n"
        "    with db.write_scope(engine) as connection:\n"
        "        return connection.execute(sqlmodel.select(1))\n"
    )
    assert sql_uses(source) == [
        "2: imports session_scope",
        "4: from sqlalchemy import ...",
        "6: import sqlmodel",
        "7: uses .write_scope",
        "8: calls .execute()",
    ]


def test_store_functions_pass() -> None:
    source = (
        "from connector.store.db import DatabaseError\n"
        "from connector.store.status import adapter_states\n"
        "def states(engine):\n"
        "    try:\n"
        "        return adapter_states(engine)\n"
        "    except DatabaseError:\n"
        "        return {}\n"
    )
    assert sql_uses(source) == []
