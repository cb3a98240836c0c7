"""A ticket's conversation read, in two database visits around the engine's decisions.

First a read-only snapshot (``read``): what the store knows of the ticket and of the messages
just read. The engine decides from it (``engine.conversation``) and hands back ``Changes``:
plain data, written in one transaction (``record_read``, or ``backfill.queue``). Whatever may
have moved since the snapshot is checked again by the writes themselves: a turn is cancelled
only in the states the engine named, a verdict and a similarity only while none is recorded,
a merged-away ticket ended only while not resolved, the read mark cleared only if no change
came since it was claimed. Where a check and its write must happen together and the outcome
decides the next write (joining a queued turn that no claim has taken, opening the next free
session), the store does both in the transaction with the values the engine decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, text
from sqlmodel import Session

from connector.store import feedback, messages, sessions, turns
from connector.store.adoption import queue_implicit_feedback, record_verdict
from connector.store.db import Database, joined_session, read_scope, reported, session_scope
from connector.store.messages import Awaiting, NewMessage
from connector.store.models import (
    AdapterState,
    TicketRecord,
    Turn,
    TurnState,
    check_transition,
)
from connector.store.plain import Plain, instance, selecting
from connector.store.tickets import update_row
from connector.store.turns import Cancel
from connector.store.writer import GroupWriter


@dataclass(frozen=True)
class Snapshot:
    """What the store knew of a ticket right after its conversation was read."""

    ticket: TicketRecord | None  # None: not stored (a ticket backfill meets first)
    known: dict[str, int | None]  # the read's stored messages, with their turn
    elsewhere: set[str]  # other tickets holding some of them: merged into this one
    posted_ids: set[str]  # our posts on the ticket
    epoch: datetime | None  # the adapter's (when asked for)
    posting: bool  # a post of ours may be under way
    drafts: list[Awaiting]  # posted drafts without a verdict
    shadowed: list[Awaiting]  # shadow answers not compared yet (when asked for)


_TICKET = selecting(TicketRecord.__table__,  # type: ignore[attr-defined]
                    "WHERE adapter = :adapter AND external_id = :ticket")
_EPOCH = Plain(text("SELECT epoch FROM adapter_state WHERE adapter = :adapter").columns(
    AdapterState.__table__.c.epoch))  # type: ignore[attr-defined]


def read(db: Database, adapter: str, ticket_id: str, ids: list[str], *, epoch: bool,
         shadow: bool) -> Snapshot:
    """The snapshot, from one read-only transaction, in plain SQL (``store.plain``): every
    message read comes here. Raises ``StoreError``."""
    with reported(), read_scope(db) as connection:
        ticket = _TICKET.run(connection, {"adapter": adapter, "ticket": ticket_id})
        row = ticket.first()
        found, elsewhere = messages.known(connection, adapter, ticket_id, ids)
        ours = turns.ours(connection, adapter, ticket_id)
        return Snapshot(
            None if row is None else instance(TicketRecord, ticket.keys, row), found,
            elsewhere, ours.posted_ids,
            _EPOCH.run(connection, {"adapter": adapter}).scalar() if epoch else None,
            ours.posting,
            [Awaiting(t, messages.reply_after(connection, t)) for t in ours.drafts],
            messages.shadowed(connection, adapter, ticket_id) if shadow else [],
        )


class Verdict(NamedTuple):
    """What an agent did with a posted draft, and the implicit rating it owes (if any)."""

    turn: Turn
    adoption: str
    score: float
    reply_at: datetime
    rating: str | None
    rating_after: datetime


class Ending(NamedTuple):
    """How a ticket's work ends: its turns cancelled, and (``close``: the reason) its own
    sessions marked to be closed. ``status``: for a ticket merged away, the status it shows
    if it had none."""

    cancel: Cancel
    close: str | None
    status: str = ""


class NewTurn(NamedTuple):
    """New customer messages, to join the ticket's turn not yet asked or to start one."""

    question: str
    last_message_id: str
    last_message_at: datetime
    message_ids: list[str]
    slot: sessions.Slot  # where a new turn's session is
    supersede: tuple[TurnState, ...]  # older turns in these states point to a new turn
    superseded: Cancel  # and those of them in its states end so
    claim: tuple[str, datetime] | None = None  # a new turn's claim (owner, until), if any


@dataclass(frozen=True)
class Changes:
    """What a read decided, written in one transaction in this order, but for the messages:
    they come after the turn they start, so they are inserted with its id."""

    adapter: str
    ticket_id: str
    now: datetime
    messages: list[NewMessage] = field(default_factory=list)
    merged: dict[str, Ending] = field(default_factory=dict)  # source ticket -> its end
    verdicts: list[Verdict] = field(default_factory=list)
    ending: Ending | None = None  # the ticket is resolved
    answered: Cancel | None = None  # turns an agent's reply answered
    similarities: dict[int, float] = field(default_factory=dict)
    turn: NewTurn | None = None
    rating: str | None = None  # an agent's rating tag on the ticket


class AddedTurn(NamedTuple):
    id: int
    session_id: str
    new: bool  # False: the messages joined a turn not yet asked
    reopened: bool  # the ticket had a closed session: the turn continues in a new one
    claimed: Turn | None = None  # the new turn as written, when created with ``NewTurn.claim``
    session_busy: bool = False  # another request of its session in flight, or queued before it


@dataclass
class Applied:
    """What the transaction wrote, for the engine's logs and events."""

    merged: list[str] = field(default_factory=list)
    closing: list[tuple[str, str]] = field(default_factory=list)  # session, reason
    verdicts: list[Verdict] = field(default_factory=list)
    ratings: list[Verdict] = field(default_factory=list)  # implicit feedback queued
    turn: AddedTurn | None = None
    rating: feedback.Queued | None = None


class _Gone(Exception):
    """The ticket's row went away (retention) between the snapshot and the write."""


def record_read(writer: GroupWriter, row_id: int, seq: int, values: dict[str, Any],
                changes: Changes) -> Applied | None:
    """The read's outcome, all or nothing: ``changes``, then the ticket row (``values``) with
    the mark cleared if ``change_seq`` is still ``seq``. None, with nothing written, when the
    row is gone. Raises ``StoreError``.

    It goes through the group writer, sharing a commit with the steps' outcomes and with other
    reads: the reads were most of the writing transactions left once the outcomes shared
    theirs. Its row locks come in the order a step's outcome takes them (turns, sessions, then
    the ticket row; a merge's source ticket is the exception), so on PostgreSQL a batch
    holding both seldom inverts them against another instance's; a deadlock still fails only
    that batch, whose reads are read again and whose steps are retried. A
    gone row raises inside the batch, which then writes each of its writes alone: rare, and
    the only way to undo this read's writes without undoing the others'.
    """
    def run(connection: Connection) -> Applied:
        with joined_session(connection) as session:
            applied = apply(session, changes)
            if not update_row(session, row_id, values, settle=seq):
                raise _Gone
            return applied

    try:
        with reported():
            return writer.write(run)
    except _Gone:
        return None


def finish_gone(db: Database, row_id: int, seq: int, reason: str, ending: Ending,
                now: datetime) -> Applied:
    """The ticket is gone from the helpdesk: resolved, its work ended, the read settled."""
    applied = Applied()
    with session_scope(db) as session:
        record = session.get(TicketRecord, row_id)
        if record is None:
            return applied
        update_row(session, row_id, {"resolved": True, "sync_error": reason}, settle=seq)
        applied.closing = _end(session, record.adapter, record.external_id, ending, now)
    return applied


def apply(db: Session, changes: Changes) -> Applied:
    """Write ``changes`` in the caller's transaction (see ``Changes`` for the order)."""
    applied = Applied()
    adapter, ticket_id, now = changes.adapter, changes.ticket_id, changes.now
    for source, ending in changes.merged.items():
        if _MERGED.run(db, {"adapter": adapter, "ticket": source,
                            "status": ending.status}).rowcount:
            applied.merged.append(source)
            applied.closing += _end(db, adapter, source, ending, now)
    for verdict in changes.verdicts:
        if not record_verdict(db, verdict.turn, verdict.adoption, verdict.score,
                              verdict.reply_at, now):
            continue
        applied.verdicts.append(verdict)
        if verdict.rating and queue_implicit_feedback(db, verdict.turn, verdict.rating,
                                                      verdict.rating_after):
            applied.ratings.append(verdict)
    if changes.ending is not None:
        applied.closing += _end(db, adapter, ticket_id, changes.ending, now)
    if changes.answered is not None:
        turns.cancel_turns(db, adapter, ticket_id, changes.answered)
    turns.record_similarities(db, changes.similarities)
    if changes.turn is None:
        messages.store(db, adapter, ticket_id, changes.messages)
    else:
        applied.turn = add_turn(db, adapter, ticket_id, changes.turn, now)
        question = set(changes.turn.message_ids)
        messages.store(db, adapter, ticket_id, changes.messages, applied.turn.id, question)
        messages.link(db, adapter, applied.turn.id,
                      question.difference(m.external_id for m in changes.messages))
    if changes.rating is not None:
        applied.rating = feedback.queue_tag(db, adapter, ticket_id, changes.rating, now)
    return applied


_MERGED = Plain(text("UPDATE ticket SET resolved = TRUE, "
                     "status = CASE WHEN status = '' THEN :status ELSE status END "
                     "WHERE adapter = :adapter AND external_id = :ticket AND NOT resolved"))


def _end(db: Session, adapter: str, ticket_id: str, ending: Ending,
         now: datetime) -> list[tuple[str, str]]:
    """Cancel the ticket's turns as ``ending`` says and mark its sessions to be closed;
    returns the sessions marked."""
    turns.cancel_turns(db, adapter, ticket_id, ending.cancel)
    if ending.close is None:
        return []
    return [(chat.session_id, ending.close)
            for chat in sessions.ticket_sessions(db, adapter, ticket_id)
            if sessions.request_close(db, chat.session_id, ending.close, now)]


def add_turn(db: Session, adapter: str, ticket_id: str, new: NewTurn,
             now: datetime) -> AddedTurn:
    """Add new customer messages to the ticket's work, in the caller's transaction.

    They join the ticket's latest turn not yet asked, unless a claim has taken it: its step may
    be asking Uppzy right now with the question as it was, and would record it as asked. Then a
    new turn asks the whole question again and supersedes the older ones (a question repeated,
    none lost). The turns are read with their rows held (``turns.held_turns``), so no claim can
    take the one joined between this check and the write. A new turn is created claimed when
    ``new.claim`` says so: the instance that read it asks it next, without claiming it first.
    Plain SQL (``store.plain``): every new customer message comes here.
    """
    db.flush()  # what the transaction wrote through the ORM must show in the reads below
    seen = sessions.around(db, new.slot)
    question = new.question
    active = turns.held_turns(db, adapter, ticket_id)
    queued = next((t for t in reversed(active) if t.state == TurnState.QUEUED), None)
    if queued is not None and queued.claim_owner is not None:
        question = f"{queued.question}\n\n{question}".strip()
        queued = None
    if queued is not None:
        turns.change(db, queued.id, {
            "question": f"{queued.question}\n\n{question}".strip(),
            "last_message_id": new.last_message_id, "last_message_at": new.last_message_at,
            "updated_at": now})
        turn_id, session = queued.id, queued.session_id
        claimed = None
    else:
        session = sessions.open_session(db, new.slot, seen)
        owner, until = new.claim or (None, None)
        added = turns.add(db, {
            "adapter": adapter, "ticket_id": ticket_id, "session_id": session,
            "site_id": new.slot.site_id, "question": question,
            "last_message_id": new.last_message_id, "last_message_at": new.last_message_at,
            "claim_owner": owner, "claim_until": until})
        turn_id, claimed = added.id, added if owner is not None else None
        assert turn_id is not None
        _supersede(db, active, turn_id, new)
    # As ``turns.surroundings`` would say, for the step a claimed new turn starts with.
    busy = any(t.session_id == session and t.id != turn_id and
               t.state in (TurnState.SUBMITTED, TurnState.QUEUED) for t in active)
    return AddedTurn(turn_id, session, queued is None, seen.reopened, claimed, busy)


def _supersede(db: Session, older: list[turns.InProgress], turn_id: int, new: NewTurn) -> None:
    """Older turns point to the new one and end, as ``new`` says (their rows are held, see
    ``add_turn``)."""
    for previous in older:
        if previous.state in new.supersede:
            values: dict[str, Any] = {"superseded_by": turn_id}
            if previous.state in new.superseded.states:
                check_transition(previous.state, TurnState.CANCELLED)
                values.update(new.superseded.values)
            turns.change(db, previous.id, values)
