"""Ticket rows: what the change feed reported, and the read mark that no writer can lose.

Two writers touch the mark at once when several instances (or a webhook and a poll) share the
database: the poll (or webhook) that saw a change sets it, and the read that covered the change
it claimed clears it. Each decides from a copy of the row it loaded earlier, so a value computed
from that copy is stale by the time it is written: a read that clears the mark from its copy
erases a change marked after the load, and a poll whose copy already showed the mark set, and
wrote only what changed, writes nothing for it, so a read ending in between wins. Either way the
ticket is never read again and, for a solved ticket, its session is never closed.

Both writes are therefore made by the database on the row as it stands when the UPDATE runs:
a mark always writes ``needs_sync`` and increments ``change_seq`` in SQL; a read clears the
mark only if ``change_seq`` is still the value it claimed. Row locks order the two UPDATEs on
PostgreSQL; SQLite has one writer at a time.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, text
from sqlmodel import Session, select

from connector.store.db import Database, read_session, session_scope
from connector.store.models import TicketRecord
from connector.store.plain import (
    Inserting,
    Plain,
    bound,
    id_list,
    in_chunks,
    instance,
    new,
    selecting,
)

TABLE = TicketRecord.__table__  # type: ignore[attr-defined]

MARK = "needs_sync = TRUE, change_seq = change_seq + 1"
SETTLE = "needs_sync = (change_seq <> :seq)"  # the read covered ``:seq``; a later mark stays


def rows(db: Database, adapter: str, ids: list[str]) -> dict[str, TicketRecord]:
    """The stored rows of ``ids``, by external id, from a read-only snapshot: one query per
    500 tickets."""
    with read_session(db) as session:
        return rows_in(session, adapter, ids)


def rows_in(db: Session, adapter: str, ids: list[str]) -> dict[str, TicketRecord]:
    """Plain SQL (``store.plain``): a feed page reads every ticket it names, twice."""
    found: dict[str, TicketRecord] = {}
    unique = list(dict.fromkeys(ids))
    for count, params in in_chunks(unique):
        loaded = _rows_of(count).run(db, {"adapter": adapter, **params})
        for row in loaded:
            record = instance(TicketRecord, loaded.keys, row)
            found[record.external_id] = record
    return found


@functools.lru_cache(maxsize=64)
def _rows_of(count: int) -> Plain:
    """The rows of ``count`` ids: one statement per count, as in ``messages.known``."""
    return selecting(TABLE, f"WHERE adapter = :adapter AND external_id IN ({id_list(count)})")


class Report(NamedTuple):
    """What one change-feed report changes on a ticket row, decided on a snapshot of it.

    ``record``: the row as the poll decided it (a new one is inserted as it is); ``changed``:
    for a stored row, the columns the report changed; ``due``: the ticket must be read (the
    mark is written in SQL, see the module docstring); ``seen``: the stored values the
    decision was made on, checked again when it is written.
    """

    record: TicketRecord
    changed: dict[str, Any]
    due: bool
    new: bool
    seen: dict[str, Any]


def save_reports(db: Session, adapter: str, reports: list[Report], *, verify: bool) -> bool:
    """Store a feed page's reports in the caller's transaction (the one that moves the cursor
    past them), if every row is still as its report saw it; False, with nothing written, when
    one changed meanwhile (a read ended, a post was counted) and the page must be decided
    again. So the decisions are those a poll holding the rows from its read to its write
    would make; a poll deciding on a stale copy would ask for reads nothing needs (but lose
    nothing, which is why the caller may write without ``verify``)."""
    current = rows_in(db, adapter, [r.record.external_id for r in reports]) if verify else {}
    for report in reports if verify else []:
        row = current.get(report.record.external_id)
        stored = {} if row is None else {column: getattr(row, column) for column in report.seen}
        if (row is None) != report.new or stored != report.seen:
            return False
    shapes: dict[tuple[frozenset[str], bool], list[dict[str, Any]]] = {}
    inserted = []
    for report in reports:
        if report.new:
            report.record.change_seq = 1
            inserted.append({c: getattr(report.record, c) for c in _INSERTED})
        elif report.changed or report.due:
            shapes.setdefault((frozenset(report.changed), report.due), []).append(
                {**report.changed, "ticket_id": report.record.id})
    _NEW.run_many(db, inserted)
    for (columns, due), rows in shapes.items():  # one executemany per shape of UPDATE
        _update(columns, due).run_many(db, rows)
    return True


_NEW = Inserting(TABLE)
_INSERTED = [c.name for c in TABLE.columns if c.name != "id"]


def new_record(adapter: str, ticket_id: str) -> TicketRecord:
    """A ticket row to decide on before it is stored (``save_reports`` inserts it): the
    model's defaults, without its validation, which cost more than the rest of the decision
    on a page of new tickets."""
    return new(TicketRecord, {"adapter": adapter, "external_id": ticket_id})


@functools.cache
def _update(columns: frozenset[str], due: bool, settle: bool = False) -> Plain:
    """``UPDATE ticket SET <columns> [, <mark> | <settle>] WHERE id = :ticket_id``, built once
    per shape, with the columns' own types (datetimes as SQLite text, booleans)."""
    names = sorted(columns)
    sets = [f"{c} = :{c}" for c in names] + ([MARK] if due else []) + \
        ([SETTLE] if settle else [])
    return bound(f"UPDATE ticket SET {', '.join(sets)} WHERE id = :ticket_id", TABLE, names)


def update_row(db: Connection | Session, row_id: int, values: dict[str, Any], *,
               due: bool = False, settle: int | None = None) -> bool:
    """Write ``values`` to the ticket row, with the mark (``due``) or a read's settling of the
    mark it covered (``settle``: the claimed ``change_seq``); False when the row is gone."""
    params = {**values, "ticket_id": row_id}
    if settle is not None:
        params["seq"] = settle
    return _update(frozenset(values), due, settle is not None).run(db, params).rowcount == 1


def mark_for_read(db: Database, adapter: str, ticket_id: str, now: datetime) -> None:
    """Ask for a read of one ticket now (a webhook said it changed, or backfill found it). Its
    count becomes unknown until the read: the next report of it is read too."""
    with session_scope(db) as session:
        record = session.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter, TicketRecord.external_id == ticket_id)).first()
        if record is None:
            session.add(TicketRecord(adapter=adapter, external_id=ticket_id, change_seq=1,
                                     sync_after=now, known_messages=None))
        else:
            assert record.id is not None
            update_row(session, record.id, {"sync_after": now, "known_messages": None},
                       due=True)


def read_failed(db: Database, row_id: int, *, counted: bool, reason: str,
                not_before: datetime) -> None:
    """A read that failed: read again at ``not_before``, with the error kept for ``status``;
    ``counted``: one more failure in a row (a rate limit is none: the vendor paces us)."""
    with session_scope(db) as session:
        (_READ_FAILED if counted else _READ_WAITED).run(
            session, {"ticket_id": row_id, "reason": reason, "sync_after": not_before})


def _failed(attempts: str) -> Plain:
    return bound(f"UPDATE ticket SET sync_attempts = {attempts}, sync_error = :reason, "
                 "sync_after = :sync_after WHERE id = :ticket_id", TABLE, ["sync_after"])


_READ_FAILED = _failed("sync_attempts + 1")
_READ_WAITED = _failed("sync_attempts")

_COUNT_OWN_POST = Plain(text("UPDATE ticket SET known_messages = known_messages + 1 "
                             "WHERE adapter = :adapter AND external_id = :ticket"))
_FORGET_COUNT = Plain(text("UPDATE ticket SET known_messages = NULL "
                           "WHERE adapter = :adapter AND external_id = :ticket"))


def count_own_post(db: Connection | Session, adapter: str, ticket_id: str, *,
                   counted: bool) -> None:
    """Our post is one more message on the ticket: count it, so that the report our post itself
    causes in the change feed needs no read. Runs in the transaction that records the post.

    ``counted=False`` (a post found again by its marker after a crash, or a real draft, which a
    helpdesk may not count as a message) makes the count unknown instead: a wrong "known" that
    runs ahead of the helpdesk's count would hide the customer's next message.
    """
    (_COUNT_OWN_POST if counted else _FORGET_COUNT).run(
        db, {"adapter": adapter, "ticket": ticket_id})
