"""Message rows: every message seen, so a message is turned into a question at most once.

A ticket's messages are stored in the order the helpdesk lists them, so row ids order a
conversation: "after the customer's message" is decided by id, because timestamps, with whole
seconds, cannot order a question and a reply written in the same second.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, text
from sqlmodel import Session

from connector.store.db import Database, read_scope
from connector.store.models import MessageRecord, Turn, TurnState
from connector.store.plain import Inserting, Plain, id_list, in_chunks, instance, selecting


class NewMessage(NamedTuple):
    """A message to store; ``ours``: one of our own posts (never a question)."""

    external_id: str
    role: str
    public: bool
    ours: bool
    created_at: datetime
    body: str


class Reply(NamedTuple):
    """An agent's public reply, as far as comparing it with an answer needs."""

    body: str
    created_at: datetime


class Awaiting(NamedTuple):
    """A turn whose answer waits to be compared with the agent's reply, and the first public
    agent reply stored after its question (None: none stored yet)."""

    turn: Turn
    reply: Reply | None


@functools.lru_cache(maxsize=64)
def _known(count: int) -> Plain:
    """The look-up of ``count`` ids, one statement per count (most reads hold one to three
    new messages), since a plain statement has no list parameter."""
    return Plain(text("SELECT external_id, turn_id, ticket_id FROM message "
                      f"WHERE adapter = :adapter AND external_id IN ({id_list(count)})"))


def known(db: Connection | Session, adapter: str, ticket_id: str,
          ids: list[str]) -> tuple[dict[str, int | None], set[str]]:
    """Which of ``ids`` are stored already (with their turn), and in which other tickets.

    Looked up across the adapter, not the ticket: a merge moves messages (same ids) into
    another ticket, where they are history, not news.
    """
    found: dict[str, int | None] = {}
    elsewhere: set[str] = set()
    for count, params in in_chunks(ids):
        for external_id, turn_id, owner in _known(count).run(
                db, {"adapter": adapter, **params}):
            found[external_id] = turn_id
            if owner != ticket_id:
                elsewhere.add(owner)
    return found, elsewhere


_STORE = Inserting(MessageRecord.__table__)  # type: ignore[attr-defined]


def store(db: Session, adapter: str, ticket_id: str, messages: list[NewMessage],
          turn_id: int | None = None, question: Collection[str] = ()) -> None:
    """Insert new messages, in conversation order (row ids order the conversation), those in
    ``question`` as part of turn ``turn_id``. One executemany: an ORM flush of the same rows
    cost several times as much."""
    _STORE.run_many(db, [{"adapter": adapter, "ticket_id": ticket_id, **m._asdict(),
                          "turn_id": turn_id if m.external_id in question else None}
                         for m in messages])


_MESSAGE_TURN = Plain(text("UPDATE message SET turn_id = :turn "
                           "WHERE adapter = :adapter AND external_id = :message"))


def link(db: Session, adapter: str, turn_id: int, ids: Collection[str]) -> None:
    """Messages stored earlier are part of the turn's question (backfill: history made new)."""
    _MESSAGE_TURN.run_many(db, [{"turn": turn_id, "adapter": adapter, "message": m}
                                for m in ids])


_REPLY = Plain(text("""
SELECT m.body, m.created_at FROM message m
WHERE m.adapter = :adapter AND m.ticket_id = :ticket AND m.role = 'agent' AND m.public
  AND NOT m.ours AND m.id > COALESCE((SELECT q.id FROM message q WHERE q.adapter = :adapter
                                      AND q.external_id = :asked), 0)
ORDER BY m.id LIMIT 1
""").columns(MessageRecord.__table__.c.body,  # type: ignore[attr-defined]
             MessageRecord.__table__.c.created_at))  # type: ignore[attr-defined]


def reply_after(db: Connection | Session, turn: Turn) -> Reply | None:
    """The first public reply by a human agent stored after the turn's last customer
    message."""
    row = _REPLY.run(db, {"adapter": turn.adapter, "ticket": turn.ticket_id,
                          "asked": turn.last_message_id}).first()
    return None if row is None else Reply(*row)


_SHADOWED = selecting(
    Turn.__table__,  # type: ignore[attr-defined]
    "WHERE adapter = :adapter AND ticket_id = :ticket AND state = :shadowed "
    "AND similarity IS NULL AND answer IS NOT NULL")


def shadowed(db: Connection | Session, adapter: str, ticket_id: str) -> list[Awaiting]:
    """The ticket's shadow answers not compared yet, each with its stored agent reply."""
    found = _SHADOWED.run(db, {"adapter": adapter, "ticket": ticket_id,
                               "shadowed": TurnState.SHADOWED.value})
    turns = [instance(Turn, found.keys, row) for row in found]
    return [Awaiting(turn, reply_after(db, turn)) for turn in turns]


def awaiting_comparison(db: Database, turn: Turn) -> list[Awaiting]:
    """``turn`` (its answer about to be kept in shadow mode) and the ticket's other shadow
    answers not compared yet, each with its stored agent reply; from a read-only snapshot."""
    with read_scope(db) as connection:
        own = [] if turn.answer is None else [Awaiting(turn, reply_after(connection, turn))]
        return own + shadowed(connection, turn.adapter, turn.ticket_id)
