"""A ticket row's read mark, written so that no concurrent writer can lose a change.

Two writers touch the mark at once when several instances (or a webhook and a poll) share the
database: the poll (or webhook) that saw a change sets it, and the read that covered the change
it claimed clears it. Each works from a copy of the row it loaded earlier, so a value computed
from that copy is stale by the time it is written: a read that clears the mark from its copy
erases a change marked after the load, and a poll whose copy already showed the mark set writes
nothing for it (the ORM sends only changed columns), so a read ending in between wins. Either
way the ticket is never read again and, for a solved ticket, its session is never closed.

Both writes are therefore made by the database on the row as it stands when the UPDATE runs:
the poll always writes the mark and increments ``change_seq`` in SQL; the read clears the mark
only if ``change_seq`` is still the value it claimed. Row locks order the two UPDATEs on
PostgreSQL; SQLite has one writer at a time.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm.attributes import flag_modified

from connector.store.models import TicketRecord


def mark_due(record: TicketRecord) -> None:
    """Record that the ticket changed and must be read (again), in the caller's transaction."""
    record.needs_sync = True
    if inspect(record).persistent:
        flag_modified(record, "needs_sync")  # written even where the loaded copy said True
        record.change_seq = TicketRecord.change_seq + 1  # type: ignore[assignment]
    else:
        record.change_seq = (record.change_seq or 0) + 1


def settle_read(record: TicketRecord, seq: int) -> None:
    """A read that covered ``change_seq == seq`` is done: the row stays due if a change came
    since. Set last: the attribute holds a SQL expression until the transaction flushes."""
    record.needs_sync = TicketRecord.change_seq != seq  # type: ignore[assignment]
