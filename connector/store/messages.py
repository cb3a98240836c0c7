"""Message rows: every message seen, so a message is turned into a question at most once.

A ticket's messages are stored in the order the helpdesk lists them, so row ids order a
conversation: "after the customer's message" is decided by id, because timestamps, with whole
seconds, cannot order a question and a reply written in the same second.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from connector.store.db import Database, read_session
from connector.store.models import MessageRecord, Turn, TurnState


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


def known(db: Session, adapter: str, ticket_id: str,
          ids: list[str]) -> tuple[dict[str, int | None], set[str]]:
    """Which of ``ids`` are stored already (with their turn), and in which other tickets.

    Looked up across the adapter, not the ticket: a merge moves messages (same ids) into
    another ticket, where they are history, not news.
    """
    found: dict[str, int | None] = {}
    elsewhere: set[str] = set()
    for start in range(0, len(ids), 500):
        for external_id, turn_id, owner in db.exec(select(
            MessageRecord.external_id, MessageRecord.turn_id, MessageRecord.ticket_id,
        ).where(
            MessageRecord.adapter == adapter,
            col(MessageRecord.external_id).in_(ids[start:start + 500]),
        )).all():
            found[external_id] = turn_id
            if owner != ticket_id:
                elsewhere.add(owner)
    return found, elsewhere


def store(db: Session, adapter: str, ticket_id: str, messages: list[NewMessage]) -> None:
    """Insert new messages, in conversation order (row ids order the conversation). One
    executemany: an ORM flush of the same rows cost several times as much."""
    if messages:
        db.execute(insert(MessageRecord.__table__), [  # type: ignore[attr-defined]
            {"adapter": adapter, "ticket_id": ticket_id, **m._asdict(), "turn_id": None}
            for m in messages
        ])


_MESSAGE_TURN = text("UPDATE message SET turn_id = :turn "
                     "WHERE adapter = :adapter AND external_id = :message")


def link(db: Session, adapter: str, turn_id: int, ids: list[str]) -> None:
    """The messages are part of the turn's question."""
    db.execute(_MESSAGE_TURN, [{"turn": turn_id, "adapter": adapter, "message": m}
                               for m in ids])


def reply_after(db: Session, turn: Turn) -> Reply | None:
    """The first public reply by a human agent stored after the turn's last customer
    message."""
    asked = db.exec(select(MessageRecord.id).where(
        MessageRecord.adapter == turn.adapter, MessageRecord.external_id == turn.last_message_id,
    )).first()
    reply = db.exec(select(MessageRecord).where(
        MessageRecord.adapter == turn.adapter, MessageRecord.ticket_id == turn.ticket_id,
        MessageRecord.role == "agent", col(MessageRecord.public), ~col(MessageRecord.ours),
        col(MessageRecord.id) > (asked or 0),
    ).order_by(col(MessageRecord.id))).first()
    return None if reply is None else Reply(reply.body, reply.created_at)


def shadowed(db: Session, adapter: str, ticket_id: str) -> list[Awaiting]:
    """The ticket's shadow answers not compared yet, each with its stored agent reply."""
    return [Awaiting(turn, reply_after(db, turn)) for turn in db.exec(select(Turn).where(
        Turn.adapter == adapter, Turn.ticket_id == ticket_id,
        Turn.state == TurnState.SHADOWED, col(Turn.similarity).is_(None),
        col(Turn.answer).is_not(None),
    ))]


def awaiting_comparison(db: Database, turn: Turn) -> list[Awaiting]:
    """``turn`` (its answer about to be kept in shadow mode) and the ticket's other shadow
    answers not compared yet, each with its stored agent reply; from a read-only snapshot."""
    with read_session(db) as session:
        own = [] if turn.answer is None else [Awaiting(turn, reply_after(session, turn))]
        return own + shadowed(session, turn.adapter, turn.ticket_id)
