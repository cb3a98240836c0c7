"""Turn rows: a step's outcome, the check before a step, the claim handed back.

The hot path of every message runs through here, so its statements are plain SQL built once:
an expression-language statement rebuilt on every step cost more CPU (construction and
cache-key generation) than executing it. Every write of a step is conditional on the writer
still holding the turn's claim (``claim_owner``): an instance that stood still past its lease
writes nothing, and learns so from the result.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, inspect, text, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from connector.store.adoption import DRAFT
from connector.store.db import Database, reported, write_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    ChatSession,
    Turn,
    TurnState,
    check_transition,
)
from connector.store.plain import Inserting, Plain, bound, instance, selecting
from connector.store.tickets import count_own_post
from connector.store.writer import GroupWriter

TABLE = Turn.__table__  # type: ignore[attr-defined]


def record_outcome(
    writer: GroupWriter, turn: Turn, values: dict[str, Any], owner: str, *,
    touch_session_at: datetime | None = None, post_counted: bool | None = None,
    similarities: Mapping[int, float] | None = None,
) -> bool:
    """Write a step's outcome and mirror it on the claimed row once it is committed; False
    (nothing written) when ``owner`` no longer holds the claim.

    The write goes through the group writer (``store/writer.py``): it shares a transaction with
    the outcomes of other steps finishing at the same time, and this returns only once that
    transaction committed, so a fence or a ``posting`` mark is durable before the remote call
    that follows it. What comes with an outcome, in the same transaction:
    ``touch_session_at``, a question asked in the turn's session (idle sessions count from
    it); ``post_counted``, our post is one more message on the ticket (True: count it, so the
    report our post causes in the change feed needs no read; False: the count becomes unknown,
    see ``count_own_post``); ``similarities``, shadow answers of the ticket scored against the
    agent's reply.
    """
    statement, params = _fenced_update(turn, values, owner)

    def run(connection: Connection) -> bool:
        if statement.run(connection, params).rowcount != 1:
            return False  # not ours: the rest of the outcome is not written either
        if touch_session_at is not None:
            _TOUCH_SESSION.run(connection, {"session": turn.session_id, "at": touch_session_at})
        if post_counted is not None:
            count_own_post(connection, turn.adapter, turn.ticket_id, counted=post_counted)
        record_similarities(connection, similarities or {})
        return True

    with reported():
        written = writer.write(run)
    if written:
        mirror(turn, values)
    return written


_SESSION_TABLE = ChatSession.__table__  # type: ignore[attr-defined]
_TOUCH_SESSION = Plain(text("UPDATE chat_session SET last_customer_at = :at "
                            "WHERE session_id = :session").bindparams(
    bindparam("at", type_=_SESSION_TABLE.c.last_customer_at.type)))
_SIMILARITY = Plain(text("UPDATE turn SET similarity = :score "
                         "WHERE id = :turn AND similarity IS NULL"))


def record_similarities(db: Connection | Session, scores: Mapping[int, float]) -> None:
    """Shadow answers' similarity to the agent's reply, each written once."""
    for turn_id, score in scores.items():
        _SIMILARITY.run(db, {"turn": turn_id, "score": score})


def write_turn(db: Connection | Session, turn: Turn, values: dict[str, Any], owner: str) -> bool:
    """Write ``values`` to the turn's row in the caller's transaction if ``owner`` still holds
    its claim; mirror them on ``turn``. Returns whether the row was written."""
    statement, params = _fenced_update(turn, values, owner)
    if statement.run(db, params).rowcount != 1:
        return False
    mirror(turn, values)
    return True


def _fenced_update(turn: Turn, values: dict[str, Any], owner: str
                   ) -> tuple[Plain, dict[str, Any]]:
    """The UPDATE of ``values`` that only matches while ``owner`` holds the claim, and its
    parameters; a state change the state machine does not allow is refused before it."""
    if "state" in values:
        check_transition(turn.state, values["state"])
    return _update_turn(frozenset(values)), {**values, "turn_id": turn.id, "owner": owner}


def mirror(turn: Turn, values: Mapping[str, Any]) -> None:
    """The claimed row in memory, as written (or about to be): the next step decides on it.
    Set as the row's loaded state, past the model's ``__setattr__`` (pydantic's checks and
    change tracking, for a row no session holds): several times cheaper, on every step.

    A row with nothing pending, expired or deferred (every row a step holds: built from a
    plain statement's result) keeps its loaded state in its ``__dict__`` alone, so that is
    where the values go: what ``set_committed_value`` does then too, at 15 µs a step instead
    of under 1."""
    state = inspect(turn)
    if not (state.committed_state or state.expired_attributes or state.callables):
        turn.__dict__.update(values)
        return
    for key, value in values.items():
        set_committed_value(turn, key, value)


def change(db: Connection | Session, turn_id: int, values: dict[str, Any]) -> None:
    """Write ``values`` to a turn's row in the caller's transaction, whoever holds it: for the
    store's own compound writes, whose rows the transaction holds."""
    _update_turn(frozenset(values), fenced=False).run(db, {**values, "turn_id": turn_id})


@functools.cache
def _update_turn(columns: frozenset[str], *, fenced: bool = True) -> Plain:
    """``UPDATE turn SET <columns> WHERE id = :turn_id AND claim_owner = :owner`` (without the
    owner unless ``fenced``), built once per set of columns.

    Typed bind parameters keep the columns' own conversions (datetimes stored as SQLite text,
    enums as their values); an expression-language UPDATE rebuilt on every step cost several
    times the statement itself.
    """
    names = sorted(columns)
    fence = " AND claim_owner = :owner" if fenced else ""
    return bound(f"UPDATE turn SET {', '.join(f'{c} = :{c}' for c in names)} "
                 f"WHERE id = :turn_id{fence}", TABLE, names)


def release(db: Database, turn_id: int | None, owner: str,
            not_before: datetime | None) -> None:
    """Hand a turn back, due at ``not_before`` (None: when it was due), if ``owner`` still
    holds it."""
    due = {} if not_before is None else {"next_attempt_at": not_before}
    with write_scope(db) as connection:
        connection.execute(update(Turn).where(col(Turn.id) == turn_id,
                                              col(Turn.claim_owner) == owner)
                           .values(claim_owner=None, claim_until=None, **due))


class Surroundings(NamedTuple):
    """What the rest of the ticket says about a turn."""

    resolved: bool
    status: str
    newer: bool  # a later turn exists on the ticket
    agent_replied: bool  # a human's public reply came after the turn's last customer message
    session_busy: bool  # another request of its session is in flight, or queued before it


# Plain SQL on purpose: built with the expression language, this one statement cost more CPU
# (statement construction and cache-key generation on every call) than the rest of the step.
_SITUATION = Plain(text("""
SELECT
  (SELECT t.resolved FROM ticket t WHERE t.adapter = :adapter AND t.external_id = :ticket),
  (SELECT t.status FROM ticket t WHERE t.adapter = :adapter AND t.external_id = :ticket),
  EXISTS (SELECT 1 FROM turn n WHERE n.adapter = :adapter AND n.ticket_id = :ticket
          AND n.id > :turn),
  EXISTS (SELECT 1 FROM message m WHERE m.adapter = :adapter AND m.ticket_id = :ticket
          AND m.role = 'agent' AND m.public AND NOT m.ours
          AND m.id > COALESCE((SELECT q.id FROM message q WHERE q.adapter = :adapter
                               AND q.external_id = :asked), 0)),
  EXISTS (SELECT 1 FROM turn o WHERE o.session_id = :session AND o.id <> :turn
          AND (o.state = :submitted OR (o.state = :queued AND o.id < :turn)))
"""))


def surroundings(db: Database, turn: Turn) -> Surroundings:
    """The ticket around ``turn``, in one statement: its own snapshot, read beside the writer
    (``Plain.read``)."""
    resolved, status, newer, agent, busy = _SITUATION.read(db, {
        "adapter": turn.adapter, "ticket": turn.ticket_id, "turn": turn.id,
        "asked": turn.last_message_id, "session": turn.session_id,
        "submitted": TurnState.SUBMITTED.value, "queued": TurnState.QUEUED.value,
    }).one()
    return Surroundings(bool(resolved), status or "", bool(newer), bool(agent), bool(busy))


class Cancel(NamedTuple):
    """Turns of a ticket to end without a draft: the columns to write (the reason among them),
    the states that may be ended so, and (``asked``) only those whose last question is one of
    these messages."""

    values: dict[str, Any]
    states: tuple[TurnState, ...]
    asked: frozenset[str] | None = None


def cancel_turns(db: Session, adapter: str, ticket_id: str, cancel: Cancel) -> None:
    """End the ticket's turns that ``cancel`` names, in the caller's transaction. The states
    are checked by the UPDATE itself, so a turn that moved on meanwhile (a post started) is
    left alone."""
    for state in cancel.states:
        check_transition(state, TurnState.CANCELLED)
    where = [col(Turn.adapter) == adapter, col(Turn.ticket_id) == ticket_id,
             col(Turn.state).in_(cancel.states)]
    if cancel.asked is None:
        db.execute(update(Turn).where(*where).values(**cancel.values))
        return
    asked = sorted(cancel.asked)
    for start in range(0, len(asked), 500):
        db.execute(update(Turn).where(*where, col(Turn.last_message_id).in_(
            asked[start:start + 500])).values(**cancel.values))


class InProgress(NamedTuple):
    """A turn in progress, as deciding about new messages needs it."""

    id: int
    state: str
    claim_owner: str | None
    question: str
    session_id: str


_ACTIVE = ("SELECT id, state, claim_owner, question, session_id FROM turn "
           "WHERE adapter = :adapter AND ticket_id = :ticket AND state IN ({}) ORDER BY id"
           .format(", ".join(f"'{s.value}'" for s in ACTIVE_TURN_STATES)))
_HELD = {lock: Plain(text(_ACTIVE + (" FOR UPDATE" if lock else ""))) for lock in (False, True)}


def held_turns(db: Session, adapter: str, ticket_id: str) -> list[InProgress]:
    """The ticket's turns in progress, oldest first, their rows held (PostgreSQL; SQLite's
    writer holds every row) so a claim cannot take one while the caller decides on it."""
    lock = db.get_bind().dialect.name == "postgresql"
    return [InProgress(*row) for row in _HELD[lock].run(db, {"adapter": adapter,
                                                              "ticket": ticket_id})]


class Ours(NamedTuple):
    """What of a ticket's turns a conversation read needs, read in one statement."""

    posted_ids: set[str]  # the helpdesk ids of our posts on the ticket
    posting: bool  # a post of ours may be under way (a turn in ``posting``)
    drafts: list[Turn]  # posted drafts without a verdict yet, oldest first


_OURS = selecting(TABLE, (
    "WHERE adapter = :adapter AND ticket_id = :ticket AND (posted_id IS NOT NULL "
    "OR state = :posting OR (state = :posted AND outcome = :draft AND adoption IS NULL "
    "AND answer IS NOT NULL)) ORDER BY id"))


def ours(db: Connection | Session, adapter: str, ticket_id: str) -> Ours:
    """Our posts on the ticket, whether one may be under way, and the posted drafts that wait
    for a verdict (``store.adoption``: a draft is a posted turn with outcome ``draft``)."""
    found = _OURS.run(db, {"adapter": adapter, "ticket": ticket_id,
                           "posting": TurnState.POSTING.value,
                           "posted": TurnState.POSTED.value, "draft": DRAFT})
    names = {name: n for n, name in enumerate(found.keys)}
    posted_id, state, outcome, adoption, answer = (
        names[c] for c in ("posted_id", "state", "outcome", "adoption", "answer"))
    return Ours(
        {row[posted_id] for row in found if row[posted_id]},
        any(row[state] == TurnState.POSTING for row in found),
        [instance(Turn, found.keys, row) for row in found
         if row[state] == TurnState.POSTED and row[outcome] == DRAFT
         and row[adoption] is None and row[answer] is not None])


_NEW = Inserting(TABLE, returning=True)


def add(db: Session, values: dict[str, Any]) -> Turn:
    """Insert a turn (the columns not in ``values`` take their defaults); returns it as
    written, for a step to start from without reading it again."""
    added = _NEW.run(db, values)
    return instance(Turn, added.keys, added.one())
