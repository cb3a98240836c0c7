"""Backfill items: what a backfill run decided per ticket, so a rerun resumes where it stopped.

An item is written in the transaction that queues its ticket's turn (``queue``), so a run
stopped anywhere leaves both or neither.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import inspect
from sqlmodel import Session, col, select

from connector.store import conversation, turns
from connector.store.db import Database, make_engine, reported, session_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    BackfillItem,
    MessageRecord,
    TicketRecord,
    Turn,
)
from connector.store.probe import sqlite_path


def open_if_present(url: str) -> Database | None:
    """The database for a dry run, which writes nothing: None where it is a SQLite file not
    made yet (without one there is simply nothing done yet)."""
    path = sqlite_path(url)
    return None if path is not None and not path.exists() else make_engine(url)


def close(db: Database) -> None:
    db.dispose()


def has_items(db: Database) -> bool:
    """Whether the database has backfill's table (a dry run may meet an old or empty one)."""
    return inspect(db).has_table(BackfillItem.__tablename__)


class Known(NamedTuple):
    """What the store already holds about one ticket."""

    item: BackfillItem | None
    posted_ids: set[str]
    in_turns: set[str]  # its messages already part of a turn


def known(db: Database, adapter: str, ticket_id: str) -> Known:
    """The store's view of a ticket, in one transaction (on SQLite every one of them waits
    for the write lock the workers keep taking)."""
    with Session(db) as session:
        in_turns = session.exec(select(MessageRecord.external_id).where(
            MessageRecord.adapter == adapter, MessageRecord.ticket_id == ticket_id,
            col(MessageRecord.turn_id).is_not(None),
        )).all()
        return Known(_item(session, adapter, ticket_id),
                     turns.ours(session, adapter, ticket_id).posted_ids, set(in_turns))


class Decision(NamedTuple):
    """An item's outcome for a ticket, as of the ticket's version it was made on."""

    outcome: str
    reason: str | None
    since: datetime
    until: datetime | None
    ticket_updated_at: datetime | None


def record(db: Database, adapter: str, ticket_id: str, decision: Decision,
           now: datetime) -> None:
    with session_scope(db) as session:
        _decide(session, adapter, ticket_id, decision, now)


def queue(db: Database, ticket: dict[str, Any], changes: conversation.Changes, waiting: str,
          queued: Decision, not_queued: Decision) -> tuple[int | None, conversation.Applied]:
    """Store the ticket as the listing reports it (``ticket``: its columns), its conversation
    (``changes``) and the item in one transaction; the item is ``queued`` when the live rules
    made a turn of the ``waiting`` message, else ``not_queued``. Returns that turn.

    A ticket new to the store needs no read by the live poller (backfill has just read it); a
    stored one keeps whatever read it was due. Raises ``Conflict`` when the live poller
    stored the same messages meanwhile.
    """
    adapter, ticket_id, now = changes.adapter, changes.ticket_id, changes.now
    with reported(), session_scope(db) as session:
        row = session.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter, TicketRecord.external_id == ticket_id)).first()
        if row is None:
            session.add(TicketRecord(adapter=adapter, external_id=ticket_id, needs_sync=False,
                                     synced_at=now, **ticket))
        else:
            for key, value in ticket.items():
                setattr(row, key, value)
            session.add(row)
        applied = conversation.apply(session, changes)
        session.flush()
        turn_id = session.exec(select(MessageRecord.turn_id).where(
            MessageRecord.adapter == adapter, MessageRecord.external_id == waiting)).first()
        _decide(session, adapter, ticket_id, queued if turn_id else not_queued, now).turn_id = \
            turn_id
    return turn_id, applied


def _item(db: Session, adapter: str, ticket_id: str) -> BackfillItem | None:
    return db.exec(select(BackfillItem).where(
        BackfillItem.adapter == adapter, BackfillItem.ticket_id == ticket_id)).first()


def _decide(db: Session, adapter: str, ticket_id: str, decision: Decision,
            now: datetime) -> BackfillItem:
    item = _item(db, adapter, ticket_id) or BackfillItem(
        adapter=adapter, ticket_id=ticket_id, since=decision.since, outcome=decision.outcome)
    item.since, item.until = decision.since, decision.until
    item.outcome = decision.outcome
    item.reason = decision.reason[:500] if decision.reason else None
    item.ticket_updated_at = decision.ticket_updated_at
    item.updated_at = now
    db.add(item)
    return item


class Ended(NamedTuple):
    turn_id: int
    state: str
    reason: str | None


def ended_turns(db: Database, ids: list[int]) -> list[Ended]:
    """Which of the turns ``ids`` have ended, and how."""
    ended: list[Ended] = []
    with Session(db) as session:
        for start in range(0, len(ids), 500):
            ended += [Ended(turn_id, state, reason) for turn_id, state, reason in session.exec(
                select(Turn.id, Turn.state, Turn.reason).where(
                    col(Turn.id).in_(ids[start:start + 500]))
            ).all() if state not in ACTIVE_TURN_STATES and turn_id is not None]
    return ended


def record_ended(db: Database, adapter: str, outcomes: list[tuple[int, str, str | None]],
                 now: datetime) -> None:
    """The outcome (and reason) of each ended turn, on the items that follow it."""
    with session_scope(db) as session:
        for turn_id, outcome, reason in outcomes:
            for item in session.exec(select(BackfillItem).where(
                    BackfillItem.adapter == adapter, BackfillItem.turn_id == turn_id)):
                item.outcome, item.reason, item.updated_at = outcome, reason, now
                session.add(item)
