"""Uppzy session rows: opened for a turn, marked to be closed, moved past a refused one.

A closed session takes no new messages, so the sessions of one base id are numbered: the base
itself, then ``-2``, ``-3`` ... A new turn goes to the first of them that is open or not made
yet; which base a ticket uses is the engine's choice (``engine.sessions``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import exists, func, text
from sqlmodel import Session, col, select

from connector.store.db import Database, session_scope
from connector.store.models import ACTIVE_TURN_STATES, ChatSession, SessionState, Turn
from connector.store.plain import Inserting, Plain
from connector.store.turns import write_turn


class Slot(NamedTuple):
    """Where a ticket's next turn goes: its session base id, the sequence number to start
    looking from, and whether the session belongs to the ticket alone (``per_thread``: the
    ticket remembers the number, and its sessions close with it)."""

    adapter: str
    ticket_id: str
    base: str
    first_seq: int
    site_id: str
    per_thread: bool


def session_id(base: str, seq: int) -> str:
    return base if seq <= 1 else f"{base}-{seq}"


_STATE = Plain(text("SELECT state FROM chat_session WHERE session_id = :id"))
_NEW = Inserting(ChatSession.__table__)  # type: ignore[attr-defined]
_SESSION_SEQ = Plain(text("UPDATE ticket SET session_seq = :seq "
                          "WHERE adapter = :adapter AND external_id = :ticket"))
_AROUND = Plain(text(
    "SELECT (SELECT 1 FROM chat_session WHERE adapter = :adapter AND ticket_id = :ticket "
    "AND state <> :open LIMIT 1), (SELECT state FROM chat_session WHERE session_id = :first)"))


class Around(NamedTuple):
    """A ticket's sessions as a new message finds them: whether one of its own was closed (or
    is closing), so the ticket reopened; and the state of the slot's first session (None: not
    made yet)."""

    reopened: bool
    first_state: str | None


def around(db: Session, slot: Slot) -> Around:
    """Both in one statement: a new customer message on every ticket reads them."""
    reopened, first_state = _AROUND.run(db, {
        "adapter": slot.adapter, "ticket": slot.ticket_id, "open": SessionState.OPEN.value,
        "first": session_id(slot.base, slot.first_seq)}).one()
    return Around(reopened is not None, first_state)


def open_session(db: Session, slot: Slot, seen: Around | None = None) -> str:
    """The session a new turn goes to, in the caller's transaction: the first open one from
    ``slot.first_seq`` on, made if none is; ``seen``: the first one's state, read already in
    this transaction. Plain SQL (``store.plain``): a new turn on every new ticket comes here."""
    db.flush()  # a session closed earlier in the transaction must look closed here
    seq = slot.first_seq
    while True:
        current = session_id(slot.base, seq)
        state = seen.first_state if seen is not None and seq == slot.first_seq else \
            _STATE.run(db, {"id": current}).scalar()
        if state is None:
            _NEW.run(db, {"session_id": current, "adapter": slot.adapter,
                          "site_id": slot.site_id,
                          "ticket_id": slot.ticket_id if slot.per_thread else None})
            break
        if state == SessionState.OPEN:
            break
        seq += 1
    if slot.per_thread and seq != slot.first_seq:  # the ticket holds ``first_seq`` already
        _SESSION_SEQ.run(db, {"seq": seq, "adapter": slot.adapter, "ticket": slot.ticket_id})
    return current


def request_close(db: Session, chat_id: str, reason: str, now: datetime) -> bool:
    """Mark a session to be closed by the housekeeping job; True if it was open."""
    chat = db.get(ChatSession, chat_id)
    if chat is None or chat.state != SessionState.OPEN:
        return False
    chat.state = SessionState.CLOSING
    chat.reason = reason
    chat.next_attempt_at = now
    chat.attempts = 0
    db.add(chat)
    return True


def ticket_sessions(db: Session, adapter: str, ticket_id: str) -> list[ChatSession]:
    return list(db.exec(select(ChatSession).where(
        ChatSession.adapter == adapter, ChatSession.ticket_id == ticket_id,
    ).order_by(col(ChatSession.created_at))))


def close_idle(db: Database, adapter: str, seen_before: datetime, reason: str,
               limit: int, now: datetime) -> list[str]:
    """Mark ``adapter``'s open sessions with no customer message since ``seen_before`` (or,
    without one, made before it) as closing; returns their ids. A session with a turn still in
    progress is never idle: closing it would refuse that turn's question."""
    last_seen = func.coalesce(ChatSession.last_customer_at, ChatSession.created_at)
    in_progress = exists().where(
        Turn.session_id == ChatSession.session_id, col(Turn.state).in_(ACTIVE_TURN_STATES))
    with session_scope(db) as session:
        idle = session.exec(select(ChatSession.session_id).where(
            ChatSession.adapter == adapter, ChatSession.state == SessionState.OPEN,
            last_seen < seen_before, ~in_progress,
        ).limit(limit)).all()
        return [chat for chat in idle if request_close(session, chat, reason, now)]


def move_turn(db: Database, turn: Turn, owner: str, refusal: str, now: datetime,
              slot: Slot | None, values: dict[str, Any]) -> bool:
    """Uppzy refused the turn's session: close it (if still open) and, with ``slot``, write
    ``values`` to the turn together with the next session of the slot, if ``owner`` still
    holds it. One transaction, so a turn never points at a session it was refused from while
    that session still looks open. Returns whether the turn was written."""
    with session_scope(db) as session:
        chat = session.get(ChatSession, turn.session_id)
        if chat is not None and chat.state == SessionState.OPEN:
            chat.state = SessionState.CLOSED
            chat.closed_at = now
            chat.reason = refusal
            session.add(chat)
        if slot is None:
            return False
        return write_turn(session, turn, {**values, "session_id": open_session(session, slot)},
                          owner)
