"""Plain SQL for the statements every message runs, built once, run on the driver's cursor.

An ORM query or flush pays on every call for building the statement, generating its cache key
and processing ORM results; on the steps of every message that cost more than running the
statements (bench/README.md). So do SQLAlchemy's execution context, parameter processing and
result wrapping, even for a cached textual statement: 15-20 µs a statement against 2-4 µs on
the driver's own cursor, and 60-100 µs each in the daemon, where 30 of them run per message.

A ``Plain`` statement is text whose bind parameters and result columns carry the table's own
column types. SQLAlchemy compiles it once per dialect (its paramstyle, the escaping of ``%``
for psycopg) and hands over the types' conversions (datetimes stored as SQLite text,
booleans); ``run`` then executes it on the DBAPI connection under the caller's SQLAlchemy
transaction, which it begins first if need be, so ``BEGIN IMMEDIATE`` on SQLite and commit
and rollback stay SQLAlchemy's. A driver error is raised as SQLAlchemy would raise it
(``OperationalError``, ``IntegrityError`` ..., parameters hidden), and a lost connection is
invalidated as SQLAlchemy would, so the callers' handling of database failures is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, TextClause, bindparam, inspect, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine
from sqlmodel import Session, SQLModel

M = TypeVar("M", bound=SQLModel)
Convert = Callable[[Any], Any] | None


@dataclass
class _Form:
    """A statement as one dialect's driver takes it."""

    sql: str
    names: tuple[str, ...] | None  # positional parameters in order (None: a dict by name)
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # parameters that need converting
    types: tuple[TypeEngine[Any], ...]  # of the result columns, when typed
    results: tuple[Convert, ...] | None = None  # per result column, once a result was seen

    def converters(self, dialect: Dialect, description: Sequence[Any]) -> tuple[Convert, ...]:
        """Each result column's conversion; made from the first result, since some depend on
        the type the driver reports (PostgreSQL's numeric types)."""
        if self.results is None:
            self.results = tuple(
                t.dialect_impl(dialect).result_processor(dialect, d[1])
                for t, d in zip(self.types, description, strict=False))
        return self.results


class Rows:
    """A statement's result: its rows, converted, and how many rows it changed."""

    __slots__ = ("keys", "rowcount", "rows")

    def __init__(self, keys: tuple[str, ...], rows: list[tuple[Any, ...]], rowcount: int):
        self.keys, self.rows, self.rowcount = keys, rows, rowcount

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def one(self) -> tuple[Any, ...]:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Plain:
    """One statement, compiled once per dialect and run on the driver's cursor."""

    def __init__(self, clause: TextClause | TextualSelect) -> None:
        self.clause = clause
        self._forms: dict[str, _Form] = {}

    def run(self, db: Connection | Session, params: Mapping[str, Any] | None = None) -> Rows:
        connection = _connection(db)
        form = self._form(connection.dialect)
        return _execute(connection, form, _params(form, params or {}), many=False)

    def read(self, engine: Engine, params: Mapping[str, Any] | None = None) -> Rows:
        """The statement alone on a pooled connection, outside any transaction of
        SQLAlchemy's: one statement is its own consistent snapshot, so a check made of one
        needs no ``BEGIN`` and ``ROLLBACK`` around it (two more driver calls, each a hand-over
        of the GIL, on every step). PostgreSQL's driver begins one anyway, which the pool ends
        when the connection goes back."""
        with engine.connect() as connection:
            form = self._form(connection.dialect)
            return _execute(connection, form, _params(form, params or {}), many=False)

    def run_many(self, db: Connection | Session, rows: Sequence[Mapping[str, Any]]) -> int:
        """The statement once per parameter set, in one driver call; the rows changed."""
        if not rows:
            return 0
        connection = _connection(db)
        form = self._form(connection.dialect)
        return _execute(connection, form, [_params(form, p) for p in rows], many=True).rowcount

    def _form(self, dialect: Dialect) -> _Form:
        form = self._forms.get(dialect.name)
        if form is None:
            form = self._forms[dialect.name] = _compile(self.clause, dialect)
        return form


def say(connection: Connection, sql: str) -> None:
    """Run ``sql``, a statement without parameters or results, on the driver's cursor of
    ``connection`` as it is (no transaction begun for it: ``BEGIN`` itself is one)."""
    _execute(connection, _Form(sql, None, (), ()), (), many=False)


def _compile(clause: TextClause | TextualSelect, dialect: Dialect) -> _Form:
    compiled = clause.compile(dialect=dialect)
    binds = []
    for name, bind in compiled.binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            binds.append((name, convert))
    columns = clause.selected_columns if isinstance(clause, TextualSelect) else ()
    names = tuple(compiled.positiontup or ()) if dialect.positional else None
    return _Form(compiled.string, names, tuple(binds), tuple(c.type for c in columns))


def _params(form: _Form, params: Mapping[str, Any]) -> Any:
    if form.binds:
        params = dict(params)
        for name, convert in form.binds:
            if name in params:
                params[name] = convert(params[name])
    if form.names is not None:
        return tuple(params[name] for name in form.names)
    return params


def _connection(db: Connection | Session) -> Connection:
    """The caller's connection, in a transaction: begun here (SQLAlchemy's begin, which on
    SQLite says ``BEGIN`` or ``BEGIN IMMEDIATE``) when the statement is its first."""
    connection = db.connection() if isinstance(db, Session) else db
    if not connection.in_transaction():
        connection.begin()
    return connection


def _execute(connection: Connection, form: _Form, params: Any, *, many: bool) -> Rows:
    dbapi = connection.connection.driver_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        if many:
            cursor.executemany(form.sql, params)
        else:
            cursor.execute(form.sql, params)
        keys: tuple[str, ...] = ()
        rows: list[tuple[Any, ...]] = []
        if cursor.description is not None:
            keys = tuple(d[0] for d in cursor.description)
            rows = cursor.fetchall()
            results = form.converters(connection.dialect, cursor.description)
            if any(results):
                rows = [tuple(v if c is None else c(v) for c, v in zip(results, row,
                                                                       strict=False))
                        for row in rows]
        return Rows(keys, rows, cursor.rowcount)
    except connection.dialect.loaded_dbapi.Error as exc:
        lost = connection.dialect.is_disconnect(exc, dbapi, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(form.sql, None, exc, connection.dialect.loaded_dbapi.Error,
                                  hide_parameters=True, connection_invalidated=lost,
                                  dialect=connection.dialect) from exc
    finally:
        cursor.close()


def bound(sql: str, table: Table, names: Iterable[str]) -> Plain:
    """``sql`` with its parameters ``names`` typed as ``table``'s columns of the same name."""
    return Plain(text(sql).bindparams(*(bindparam(n, type_=table.c[n].type) for n in names)))


def selecting(table: Table, rest: str) -> Plain:
    """``SELECT <every column> FROM <table> <rest>``, its results typed as the columns."""
    names = ", ".join(c.name for c in table.columns)
    return Plain(text(f"SELECT {names} FROM {table.name} {rest}").columns(*table.columns))


class Inserting:
    """``INSERT INTO <table>`` of the values given, the other columns taking their Python
    defaults as SQLAlchemy would give them (timestamps, states), which a plain INSERT would
    leave NULL; ``returning``: the row as written comes back, typed. One ``Plain`` per set of
    columns."""

    def __init__(self, table: Table, *, returning: bool = False) -> None:
        self._table = table
        self._returning = returning
        self._defaults = [(c.name, c.default) for c in table.columns
                          if c.default is not None and getattr(c.default, "arg", None) is not None]
        self._plain: dict[tuple[str, ...], Plain] = {}

    def run(self, db: Connection | Session, values: Mapping[str, Any]) -> Rows:
        row = self._complete(values)
        return self._statement(tuple(row)).run(db, row)

    def run_many(self, db: Connection | Session, rows: Sequence[Mapping[str, Any]]) -> int:
        """Rows with the same columns, in one driver call (in order: ids follow it)."""
        full = [self._complete(r) for r in rows]
        return self._statement(tuple(full[0])).run_many(db, full) if full else 0

    def _complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        row = dict(values)
        for name, default in self._defaults:
            if name not in row:
                row[name] = default.arg(None) if default.is_callable else default.arg
        return row

    def _statement(self, names: tuple[str, ...]) -> Plain:
        plain = self._plain.get(names)
        if plain is None:
            table = self._table
            sql = text(f"INSERT INTO {table.name} ({', '.join(names)}) "
                       f"VALUES ({', '.join(f':{n}' for n in names)})"
                       + (f" RETURNING {', '.join(c.name for c in table.columns)}"
                          if self._returning else ""))
            sql = sql.bindparams(*(bindparam(n, type_=table.c[n].type) for n in names))
            plain = self._plain[names] = Plain(sql.columns(*table.columns)
                                               if self._returning else sql)
        return plain


IN_CHUNK = 500  # values in one IN list: every driver takes that many parameters


def id_list(count: int) -> str:
    """``:id0, :id1, ...`` for an ``IN`` list of ``count`` values: a plain statement has no
    list parameter, so such a look-up is one statement per count (cache it by count)."""
    return ", ".join(f":id{n}" for n in range(count))


def in_chunks(ids: Sequence[str], size: int = IN_CHUNK) -> Iterator[tuple[int, dict[str, str]]]:
    """``ids`` in chunks of at most ``size``: each chunk's length and its parameters for
    ``id_list``."""
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        yield len(chunk), {f"id{n}": value for n, value in enumerate(chunk)}


def instance(model: type[M], keys: Sequence[str], row: Sequence[Any]) -> M:
    """A model instance from a row of ``selecting`` (every column): what the engine decides on,
    not attached to any session.

    Built the way the ORM builds a row it loads, without ``__init__``: the model's pydantic
    validation of every column took about 100 µs a row (3 µs this way), more than running the
    statement, and the values are already the column types' own, as in a row the ORM loads.
    """
    made = _manager(model).new_instance()
    made.__dict__.update(zip(keys, row, strict=True))
    return made  # type: ignore[no-any-return]


def new(model: type[M], values: Mapping[str, Any]) -> M:
    """A model instance not stored yet: ``values``, and the model's own defaults for the
    other fields (factories called), built like ``instance``, without the validation of
    ``__init__``. For rows made by the hundred (a feed page of new tickets), to be inserted
    with ``Inserting``."""
    made = _manager(model).new_instance()
    made.__dict__.update({name: values[name] if name in values else
                          (factory() if factory is not None else default)
                          for name, default, factory in _defaults(model)})
    return made  # type: ignore[no-any-return]


@functools.cache
def _manager(model: type[SQLModel]) -> Any:
    """The model's class manager, which builds instances as the ORM loads them. Mappers are
    configured the first time (the manager needs it); ``configure_mappers`` on every row,
    though a no-op once done, walked every registry each time: 2 % of a burst's CPU."""
    configure_mappers()
    return inspect(model).class_manager


@functools.cache
def _defaults(model: type[SQLModel]) -> tuple[tuple[str, Any, Callable[[], Any] | None], ...]:
    return tuple((name, info.default, info.default_factory)  # type: ignore[misc]
                 for name, info in model.model_fields.items())
