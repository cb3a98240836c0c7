"""Plain SQL for the statements every message runs, built once.

An ORM query or flush pays on every call for building the statement, generating its cache key
and processing ORM results; on the steps of every message that cost more than running the
statements (bench/README.md). These statements are text built at import, and their bind
parameters and result columns carry the table's own column types, so values convert as the ORM
would convert them (datetimes stored as SQLite text, booleans, enums as their values).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Row, Table, TextClause, bindparam, inspect, text
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql.selectable import TextualSelect
from sqlmodel import SQLModel

M = TypeVar("M", bound=SQLModel)


def bound(sql: str, table: Table, names: Iterable[str]) -> TextClause:
    """``sql`` with its parameters ``names`` typed as ``table``'s columns of the same name."""
    return text(sql).bindparams(*(bindparam(n, type_=table.c[n].type) for n in names))


def selecting(table: Table, rest: str) -> TextualSelect:
    """``SELECT <every column> FROM <table> <rest>``, its results typed as the columns."""
    names = ", ".join(c.name for c in table.columns)
    return text(f"SELECT {names} FROM {table.name} {rest}").columns(*table.columns)


def instance(model: type[M], row: Row[Any]) -> M:
    """A model instance from a row of ``selecting`` (every column): what the engine decides on,
    not attached to any session.

    Built the way the ORM builds a row it loads, without ``__init__``: the model's pydantic
    validation of every column took about 100 µs a row (3 µs this way), more than running the
    statement, and the values are already the column types' own, as in a row the ORM loads.
    """
    configure_mappers()  # a no-op once done; the class manager needs it the first time
    made = inspect(model).class_manager.new_instance()
    made.__dict__.update(row._mapping)
    return made  # type: ignore[no-any-return]
