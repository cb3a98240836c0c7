"""From a changed ticket to turns: read its conversation, store new messages, decide turns.

A read is a retryable step per ticket, claimed through the ticket's ``sync_after``; it covers
the ``change_seq`` it claimed, so a change seen by a poll meanwhile makes the ticket read again.
Public customer messages after the last public agent reply become a turn; agent replies,
internal notes, system events and our own posts never do.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from adapters.base import Message, Role, Ticket
from connector.core.errors import (
    RateLimited,
    RemoteError,
)
from connector.engine import bounds, replies, sessions, verdicts
from connector.engine.ingest import adapter_state, handle_adapter_error
from connector.engine.outcomes import Action, Step, disposition
from connector.engine.render import own_post
from connector.store import adoption as adoption_store
from connector.store.db import session_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    Feedback,
    MessageRecord,
    SessionState,
    TicketRecord,
    Turn,
    TurnState,
    check_transition,
    utcnow,
)
from connector.store.tickets import settle_read

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

COUNT_PROOFS = 2  # tickets whose reads must show that the helpdesk counts private messages


def sync_ticket(engine: Runtime, claimed: TicketRecord) -> None:
    """Read one claimed ticket's conversation and turn new customer messages into work."""
    record, seq = claimed, claimed.change_seq
    assert record.id is not None
    row_id, name, ticket_id = record.id, record.adapter, record.external_id
    adapter = engine.adapters[name]
    try:
        ticket = adapter.get_ticket(ticket_id) if record.remote_updated_at is None and \
            not record.status else None
        messages = adapter.list_messages(ticket or _as_ticket(record))
    except RemoteError as exc:
        action = disposition(exc, Step.READ)
        if action is Action.GONE:
            # The adapter's own poll still works (a broken token fails there and pauses the
            # adapter), so a 404/301/403 on this one ticket means it is gone or out of sight.
            log.info("ticket %s/%s is gone (%s); ending its work", name, ticket_id,
                     type(exc).__name__)
            _finish_gone(engine, row_id, seq, f"ticket no longer available: {type(exc).__name__}")
            return
        if action is Action.PAUSE or isinstance(exc, RateLimited):
            handle_adapter_error(engine, name, exc, f"reading ticket {ticket_id}")
        _sync_failed(engine, row_id, exc)
        return
    messages = [bounds.message(m) for m in messages]
    try:
        with session_scope(engine.db) as db:
            record = db.get(TicketRecord, row_id)
            if record is None:
                return
            if ticket is not None:
                record.status = bounds.label(ticket.status) or ""
                record.resolved = ticket.resolved
                record.tags = " ".join(sorted(ticket.tags))
                record.requester_key = engine.requester_key(
                    ticket.requester_email, ticket.requester_id
                )
            apply_conversation(engine, db, record, messages)
            _count_read(engine, db, record, messages, seq)
            record.sync_after = utcnow()
            record.sync_attempts = 0
            record.sync_error = None
            record.synced_at = utcnow()
            settle_read(record, seq)
            db.add(record)
    except SQLAlchemyError as exc:
        # Stored nothing of this read (rolled back): read it again later, with the error shown.
        _sync_failed(engine, row_id, exc)


def _count_read(
    engine: Runtime, db: Session, record: TicketRecord, messages: list[Message], seq: int
) -> None:
    """After a read: calibrate the adapter's count, and remember how many messages we read.

    Calibration: nobody documents whether Zendesk's ``comment_count`` includes private comments,
    and if it did not, trusting it would lose messages (see ``_mark_changed``). A read settles it:
    a count that covers public messages only is smaller than the total whenever one of them is
    private, and messages only ever get added, so a reported count (taken before this read) equal
    to everything read, private messages among it, can only come from a count of every message.
    Until reads of ``COUNT_PROOFS`` tickets show that, every report is read as before.

    ``known_messages`` stays unknown (None) while one of our posts on the ticket is under way:
    this read may or may not contain it, and the +1 that recording the post adds
    (``note_own_post``) would then count it twice. Adapters that report no count skip all this.
    """
    if record.reported_messages is None:
        record.known_messages = None
        return
    if record.adapter not in engine.counts_private and record.change_seq == seq and \
            record.reported_messages == len(messages) and not all(m.public for m in messages):
        # Two tickets must agree: one odd read (a comment the adapter dropped as malformed can
        # make a public-only count equal what was read) must not be enough to trust a count.
        proofs = engine.count_proofs.setdefault(record.adapter, set())
        proofs.add(record.external_id)
        if len(proofs) >= COUNT_PROOFS:
            engine.counts_private.add(record.adapter)
            log.info("adapter %s: its message counts include private messages; a ticket whose "
                     "count is unchanged is no longer re-read", record.adapter)
    posting = db.exec(select(Turn.id).where(
        Turn.adapter == record.adapter, Turn.ticket_id == record.external_id,
        Turn.state == TurnState.POSTING,
    )).first()
    record.known_messages = None if posting is not None else len(messages)


def _as_ticket(record: TicketRecord) -> Ticket:
    return Ticket(external_id=record.external_id, status=record.status, resolved=record.resolved)


def _sync_failed(engine: Runtime, row_id: int, exc: RemoteError | SQLAlchemyError) -> None:
    """A read that failed is read again later, however often it fails: the cursor has moved
    past the ticket, so giving the read up would lose its messages. The error shows in
    ``status`` (``sync_error``) and the log; the wait grows up to ``engine.max_backoff``.
    A 429 waits its ``Retry-After`` without growing the wait: it is the vendor pacing us."""
    retry_after = getattr(exc, "retry_after", None)
    reason = str(exc) if isinstance(exc, RemoteError) else \
        f"database error storing the conversation ({type(exc).__name__})"
    with session_scope(engine.db) as db:
        record = db.get(TicketRecord, row_id)
        if record is None:
            return
        if not isinstance(exc, RateLimited):
            record.sync_attempts += 1
        record.sync_error = reason[:500]
        delay = max(retry_after or 0.0, engine.backoff(record.sync_attempts))
        record.sync_after = utcnow() + timedelta(seconds=delay)
        db.add(record)
        level = logging.ERROR if record.sync_attempts == engine.config.engine.max_attempts \
            else logging.INFO if isinstance(exc, RateLimited) else logging.WARNING
        log.log(level, "ticket %s/%s: read failed (%d in a row): %s; again in %.0fs",
                record.adapter, record.external_id, record.sync_attempts, reason, delay)


def _finish_gone(engine: Runtime, row_id: int, seq: int, reason: str) -> None:
    with session_scope(engine.db) as db:
        record = db.get(TicketRecord, row_id)
        if record is None:
            return
        record.resolved = True
        record.sync_error = reason
        _resolve(engine, db, record, reason)
        settle_read(record, seq)
        db.add(record)


def apply_conversation(
    engine: Runtime, db: Session, record: TicketRecord, messages: list[Message], *,
    history_ok: bool = False,
) -> None:
    """Store new messages and decide what they mean: a new turn, a cancel, a session close.

    Only public customer messages that came after the last public agent reply, and after the
    adapter's epoch, start work; our own posts (recognised by marker or posted id), agent
    replies, internal notes and system events never do. ``history_ok`` is backfill's: no epoch,
    and messages stored earlier as history (in no turn yet) count as new.
    """
    name = record.adapter
    known, elsewhere = _known_messages(db, record, [m.external_id for m in messages])
    _end_merged_sources(engine, db, record, elsewhere)
    posted_ids = set(db.exec(select(Turn.posted_id).where(
        Turn.adapter == name, Turn.ticket_id == record.external_id,
        col(Turn.posted_id).is_not(None),
    )).all())
    epoch = None if history_ok else _epoch(engine, db, name)
    # Shadow mode answers what agents already answered too: that is the comparison.
    shadow = engine.config.shadow(engine.config.adapter(name))
    last_agent_index = -1
    new_customer: list[Message] = []
    rows: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        ours = own_post(message, posted_ids)
        if message.role == Role.AGENT and message.public and not ours:
            last_agent_index = index
            if not shadow:
                new_customer.clear()  # a human answered everything before this
        if message.external_id not in known:
            rows.append(_message_row(record, message, ours))
        elif not history_ok or known[message.external_id] is not None:
            continue
        if message.role == Role.CUSTOMER and message.public and not ours and \
                (epoch is None or message.created_at >= epoch) and index > last_agent_index:
            new_customer.append(message)
    if rows:
        # One executemany, in conversation order (row ids order the conversation: replies.py);
        # an ORM flush of the same rows cost several times as much.
        db.execute(insert(MessageRecord.__table__), rows)  # type: ignore[attr-defined]
    verdicts.judge_ticket(engine, db, record, messages)
    if record.resolved:
        _resolve(engine, db, record, f"ticket {record.status or 'resolved'}")
        _collect_feedback(engine, db, record)
        return
    if last_agent_index >= 0 and not shadow:
        answered = {m.external_id for m in messages[:last_agent_index]}
        _cancel_answered_by_agent(db, record, answered)
    if shadow:
        db.flush()
        replies.compare_shadowed(db, name, record.external_id)
    if new_customer:
        if _had_closed_session(db, record):
            log.info("ticket %s/%s reopened; continuing in a new session", name,
                     record.external_id)
        _add_turn(engine, db, record, new_customer)
    _collect_feedback(engine, db, record)


def _message_row(record: TicketRecord, message: Message, ours: bool) -> dict[str, Any]:
    return {"adapter": record.adapter, "ticket_id": record.external_id,
            "external_id": message.external_id, "role": message.role.value,
            "public": message.public, "ours": ours, "created_at": message.created_at,
            "body": message.body, "turn_id": None}


def _known_messages(
    db: Session, record: TicketRecord, ids: list[str]
) -> tuple[dict[str, int | None], set[str]]:
    """Which of ``ids`` are stored already (with their turn), and in which other tickets.

    Looked up across the adapter, not the ticket: a merge moves messages (same ids) into
    another ticket, where they are history, not news.
    """
    known: dict[str, int | None] = {}
    elsewhere: set[str] = set()
    for start in range(0, len(ids), 500):
        for external_id, turn_id, ticket_id in db.exec(select(
            MessageRecord.external_id, MessageRecord.turn_id, MessageRecord.ticket_id,
        ).where(
            MessageRecord.adapter == record.adapter,
            col(MessageRecord.external_id).in_(ids[start:start + 500]),
        )).all():
            known[external_id] = turn_id
            if ticket_id != record.external_id:
                elsewhere.add(ticket_id)
    return known, elsewhere


def _end_merged_sources(
    engine: Runtime, db: Session, record: TicketRecord, sources: set[str]
) -> None:
    """Messages we stored under other tickets (``sources``) now show up here: they were merged in.

    Helpdesks keep message ids on a merge but do not always report the merged-away ticket in
    their change feed, so this is often the only sign that its work and session must end.
    """
    for source_id in sources:
        source = db.exec(select(TicketRecord).where(
            TicketRecord.adapter == record.adapter, TicketRecord.external_id == source_id
        )).first()
        if source is None or source.resolved:
            continue
        log.info("ticket %s/%s was merged into %s; ending its work", record.adapter, source_id,
                 record.external_id)
        source.resolved = True
        source.status = source.status or "merged"
        db.add(source)
        _resolve(engine, db, source, f"merged into ticket {record.external_id}")


def _epoch(engine: Runtime, db: Session, name: str) -> datetime:
    """The adapter's epoch: set once by its first poll and never changed, so kept in memory."""
    epoch = engine.epochs.get(name)
    if epoch is None:
        epoch = adapter_state(db, name).epoch
        if epoch is None:
            return utcnow()
        engine.epochs[name] = epoch
    return epoch


def _had_closed_session(db: Session, record: TicketRecord) -> bool:
    return any(s.state != SessionState.OPEN for s in sessions.ticket_sessions(
        db, record.adapter, record.external_id))


def _active_turns(db: Session, record: TicketRecord, *, lock: bool = False) -> list[Turn]:
    """``lock``: hold the rows (PostgreSQL) so a claim cannot take one while we decide on it."""
    query = select(Turn).where(
        Turn.adapter == record.adapter, Turn.ticket_id == record.external_id,
        col(Turn.state).in_(ACTIVE_TURN_STATES),
    ).order_by(col(Turn.id))
    return list(db.exec(query.with_for_update() if lock else query))


def cancelled(reason: str) -> dict[str, Any]:
    """The columns of a turn that ends without a draft, with its reason (claim released)."""
    return {"state": TurnState.CANCELLED, "reason": reason, "updated_at": utcnow(),
            "claim_owner": None, "claim_until": None}


def cancel(turn: Turn, reason: str) -> None:
    check_transition(turn.state, TurnState.CANCELLED)
    for key, value in cancelled(reason).items():
        setattr(turn, key, value)


def _resolve(engine: Runtime, db: Session, record: TicketRecord, reason: str) -> None:
    """No new draft on a resolved ticket; its session is closed once."""
    for turn in _active_turns(db, record):
        if turn.state == TurnState.POSTING:
            continue  # a post may be under way; the post step re-checks and reconciles
        cancel(turn, reason)
        db.add(turn)
    if engine.config.session == "per_thread":
        for chat in sessions.ticket_sessions(db, record.adapter, record.external_id):
            if sessions.request_close(db, chat.session_id, reason):
                log.info("session %s: closing (%s)", chat.session_id, reason)


def _cancel_answered_by_agent(db: Session, record: TicketRecord, answered: set[str]) -> None:
    """A human already answered: drop turns not yet posted (a request in flight is dropped
    by the post step's own re-check when its answer arrives).

    ``answered`` holds the ids of messages before the agent's reply, in conversation order:
    timestamps have whole seconds, so they cannot order a reply and a question of one second.
    """
    for turn in _active_turns(db, record):
        if turn.state in (TurnState.QUEUED, TurnState.ANSWERED) and \
                turn.last_message_id in answered:
            cancel(turn, "answered by an agent")
            db.add(turn)


def _add_turn(
    engine: Runtime, db: Session, record: TicketRecord, new_messages: list[Message]
) -> None:
    """Messages that arrive together form one turn; they join a turn not yet asked.

    Not one that is claimed: its step may be asking Uppzy right now with the question as it was,
    and would record it as asked. A newer turn then asks the whole question again and the
    claimed one is superseded (its answer, if any, dropped): a question repeated, none lost.
    """
    question = "\n\n".join(m.body.strip() for m in new_messages if m.body.strip())
    last = new_messages[-1]
    active = _active_turns(db, record, lock=True)
    queued = next((t for t in reversed(active) if t.state == TurnState.QUEUED), None)
    if queued is not None and queued.claim_owner is not None:
        # Asked (or about to be) without these messages: a newer turn carries everything.
        question = f"{queued.question}\n\n{question}".strip()
        queued = None
    if queued is not None:
        queued.question = f"{queued.question}\n\n{question}".strip()
        queued.last_message_id = last.external_id
        queued.last_message_at = last.created_at
        queued.updated_at = utcnow()
        db.add(queued)
        turn = queued
    else:
        site_id = engine.site_for(record.adapter)
        session_id = sessions.open_session_id(
            db, record.adapter, record, engine.config.session, site_id
        )
        turn = Turn(
            adapter=record.adapter, ticket_id=record.external_id, session_id=session_id,
            site_id=site_id, question=question, last_message_id=last.external_id,
            last_message_at=last.created_at,
        )
        db.add(turn)
        db.flush()
        for older in active:
            if older.state in (TurnState.SUBMITTED, TurnState.ANSWERED):
                older.superseded_by = turn.id
                if older.state == TurnState.ANSWERED:
                    cancel(older, "superseded by a newer customer message")
                db.add(older)
        log.info("ticket %s/%s: new turn %d", record.adapter, record.external_id, turn.id,
                 extra={"adapter": record.adapter, "ticket_id": record.external_id,
                        "session_id": session_id, "turn_id": turn.id})
    db.execute(_MESSAGE_TURN, [
        {"turn": turn.id, "adapter": record.adapter, "message": m.external_id}
        for m in new_messages
    ])


_MESSAGE_TURN = text("UPDATE message SET turn_id = :turn "
                     "WHERE adapter = :adapter AND external_id = :message")


def _collect_feedback(engine: Runtime, db: Session, record: TicketRecord) -> None:
    """A feedback tag on the ticket rates its latest answered request, once per value."""
    tags = record.tag_set()
    settings = engine.config.feedback
    value = "bad" if tags & set(settings.bad_tags) else "good" if tags & set(
        settings.good_tags) else None
    if value is None:
        return
    already = db.exec(select(Feedback.id).where(
        Feedback.adapter == record.adapter, Feedback.ticket_id == record.external_id,
        Feedback.value == value,
    )).first()
    if already is not None:
        return
    latest = db.exec(select(Turn).where(
        Turn.adapter == record.adapter, Turn.ticket_id == record.external_id,
        col(Turn.request_id).is_not(None), col(Turn.answer).is_not(None),
    ).order_by(col(Turn.id).desc())).first()
    if latest is None or latest.request_id is None:
        return
    if db.exec(select(Feedback.id).where(Feedback.request_id == latest.request_id)).first():
        if adoption_store.tag_replaces_implicit(db, latest.request_id, value, utcnow()):
            log.info("ticket %s/%s: the agent's %s tag replaces the implicit rating of %s",
                     record.adapter, record.external_id, value, latest.request_id)
        return
    db.add(Feedback(
        adapter=record.adapter, ticket_id=record.external_id, session_id=latest.session_id,
        site_id=latest.site_id, request_id=latest.request_id, value=value,
    ))
    log.info("ticket %s/%s: %s feedback queued for %s", record.adapter, record.external_id,
             value, latest.request_id)
