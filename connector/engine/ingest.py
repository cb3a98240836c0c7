"""From helpdesk to turns: poll changed tickets, then read their conversations.

Polling only records *which* tickets changed, in the same transaction that advances the cursor;
reading a conversation is a separate, retryable step per ticket. A crash between any two remote
calls therefore loses nothing: the cursor never moves past a ticket that is not marked.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, text
from sqlmodel import Session, col, select

from adapters.base import Message, Role, Ticket
from connector.engine import replies, sessions
from connector.engine.render import find_marker
from connector.errors import (
    AuthenticationFailed,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    RemoteError,
)
from connector.store import claims
from connector.store.db import session_scope
from connector.store.models import (
    ACTIVE_TURN_STATES,
    AdapterState,
    Feedback,
    MessageRecord,
    TicketRecord,
    Turn,
    TurnState,
    utcnow,
)

if TYPE_CHECKING:
    from connector.engine.runtime import Engine

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 50
AUTH_PAUSE = 300.0
CALIBRATION_FIRST = timedelta(hours=1)
COUNT_PROOFS = 2  # tickets whose reads must show that the helpdesk counts private messages


def adapter_state(db: Session, name: str) -> AdapterState:
    state = db.get(AdapterState, name)
    if state is None:
        state = AdapterState(adapter=name)
        db.add(state)
    return state


def pause_adapter(engine: Engine, name: str, seconds: float, reason: str) -> None:
    """Stop calling a helpdesk for a while; shown in ``status``, retried slowly."""
    with session_scope(engine.db) as db:
        state = adapter_state(db, name)
        state.paused_until = utcnow() + timedelta(seconds=seconds)
        state.pause_reason = reason
        state.consecutive_failures += 1


def handle_adapter_error(engine: Engine, name: str, exc: RemoteError, doing: str) -> None:
    """What a helpdesk error means for the whole adapter (not for one item)."""
    if isinstance(exc, AuthenticationFailed | PermissionDenied):
        kind = "authentication failed" if isinstance(exc, AuthenticationFailed) else \
            "permission denied"
        log.error("adapter %s paused: %s while %s (%s); retrying in %ds", name, kind, doing,
                  exc, AUTH_PAUSE)
        pause_adapter(engine, name, AUTH_PAUSE, f"{kind}: {exc}")
        engine.emit("adapter_paused", adapter=name, reason=kind, status=exc.status)
    elif isinstance(exc, RateLimited):
        wait = exc.retry_after or 60.0
        log.warning("adapter %s rate limited while %s; pausing %.0fs", name, doing, wait)
        pause_adapter(engine, name, wait, "rate limited by the helpdesk")
    else:
        log.warning("adapter %s: %s failed: %s", name, doing, exc)
        with session_scope(engine.db) as db:
            adapter_state(db, name).consecutive_failures += 1


def adapter_paused(db: Session, name: str) -> bool:
    state = db.get(AdapterState, name)
    return bool(state and state.paused_until and state.paused_until > utcnow())


def poll_adapter(engine: Engine, name: str) -> int:
    """Walk the change feed from the stored cursor; returns how many tickets were marked."""
    adapter = engine.adapters[name]
    with session_scope(engine.db) as db:
        now = utcnow()
        if not claims.hold_adapter(db, name, engine.instance_id, now, engine.lease_ttl):
            return 0  # another instance polls this adapter
        if adapter_paused(db, name):
            return 0
        state = adapter_state(db, name)
        state.last_poll_at = now
        if state.epoch is None:
            state.epoch = now - timedelta(seconds=adapter.settings.start_from)
        cursor, epoch = state.cursor, state.epoch
    marked = 0
    for _ in range(MAX_PAGES_PER_POLL):
        try:
            page = adapter.poll_changes(cursor, epoch)
        except RemoteError as exc:
            handle_adapter_error(engine, name, exc, "polling changes")
            engine.emit("poll_failed", adapter=name, error=type(exc).__name__)
            return marked
        with session_scope(engine.db) as db:
            records = _ticket_rows(db, name, [t.external_id for t in page.tickets])
            trusted = name in engine.counts_private
            for ticket in page.tickets:
                marked += _mark_changed(db, name, ticket, records, counts_trusted=trusted)
            state = adapter_state(db, name)
            now = utcnow()
            if page.cursor != state.cursor:
                state.cursor_moved_at = now
            state.cursor = page.cursor
            state.last_poll_ok_at = now
            state.consecutive_failures = 0
            state.paused_until = None
            state.pause_reason = None
        cursor = page.cursor
        if not page.more:
            break
    if marked:
        log.info("adapter %s: %d changed ticket(s) to read", name, marked)
    engine.emit("poll_ok", adapter=name, tickets=marked)
    return marked


def _ticket_rows(db: Session, adapter: str, ids: list[str]) -> dict[str, TicketRecord]:
    """The stored rows of a feed page's tickets, by external id: one query per 500 tickets."""
    rows: dict[str, TicketRecord] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 500):
        for record in db.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter,
            col(TicketRecord.external_id).in_(unique[start:start + 500]),
        )):
            rows[record.external_id] = record
    return rows


def _mark_changed(
    db: Session, adapter: str, ticket: Ticket, records: dict[str, TicketRecord], *,
    counts_trusted: bool = False,
) -> int:
    """Upsert the ticket and mark it for a conversation read, unless the report proves that
    nothing we have not seen was added; returns 1 when marked.

    Times cannot prove that: helpdesk timestamps have one-second resolution, so "same
    updated_at" says nothing about a message written in the same second as the last one we
    read. A count can: messages are only ever added (Zendesk redacts, it never removes), so a
    reported count equal to the number we know of means no message came that we have not read,
    however close together they were written. That is why the read is skipped only when all of
    these hold, and any doubt means a read as before:

    - the report has a count, and it equals ``known_messages`` (None, our "unsure", never does);
    - ``resolved`` and the tags are unchanged, since those start work of their own (closing the
      session, collecting feedback) that only a read does;
    - the row is not already due for a read: a pending read must still happen;
    - ``counts_trusted``: the helpdesk's count has been seen to include private messages (see
      ``_count_read``). Our own post is a private note; were it not counted, "known" (which
      counts it) would run one ahead of the report, and the customer's next message would make
      the two equal and go unread.

    The state, tags and count are stored on every report, read or not.
    """
    record = records.get(ticket.external_id)
    tags = " ".join(sorted(ticket.tags))
    key = sessions.requester_key(ticket.requester_email, ticket.requester_id)
    if record is None:
        record = TicketRecord(adapter=adapter, external_id=ticket.external_id)
        records[ticket.external_id] = record  # a page may name a ticket twice
    unchanged = (
        ticket.message_count is not None and ticket.message_count == record.known_messages
        and ticket.resolved == record.resolved and tags == record.tags
        and not record.needs_sync
    )
    nothing_new = counts_trusted and unchanged
    record.status = ticket.status
    record.resolved = ticket.resolved
    record.tags = tags
    record.channel = ticket.channel
    record.requester_key = key or record.requester_key
    record.remote_updated_at = ticket.updated_at
    record.reported_messages = ticket.message_count
    if nothing_new:
        db.add(record)
        return 0
    if not record.needs_sync:
        # Until the counts are trusted, a ticket that would have been skipped is the read that
        # can prove them (``_count_read``): it goes ahead of a backlog of first reads, so the
        # proof comes within seconds of the first note instead of after the whole burst.
        record.sync_after = utcnow() - (CALIBRATION_FIRST if unchanged else timedelta(0))
    record.needs_sync = True
    record.change_seq += 1
    db.add(record)
    return 1


def mark_ticket(engine: Engine, adapter: str, ticket_id: str) -> None:
    """Ask for a re-read of one ticket now (a webhook said it changed, or backfill found it)."""
    with session_scope(engine.db) as db:
        record = db.exec(select(TicketRecord).where(
            TicketRecord.adapter == adapter, TicketRecord.external_id == ticket_id
        )).first()
        if record is None:
            record = TicketRecord(adapter=adapter, external_id=ticket_id)
        record.needs_sync = True
        record.sync_after = utcnow()
        record.change_seq += 1
        record.known_messages = None  # unsure until the read: the next report reads again
        db.add(record)


_COUNT_OWN_POST = text("UPDATE ticket SET known_messages = known_messages + 1 "
                       "WHERE adapter = :adapter AND external_id = :ticket")
_FORGET_COUNT = text("UPDATE ticket SET known_messages = NULL "
                     "WHERE adapter = :adapter AND external_id = :ticket")


def note_own_post(db: Connection, adapter: str, ticket_id: str, *, counted: bool) -> None:
    """Our post is one more message on the ticket: count it, so that the report our post itself
    causes in the change feed needs no read. Runs in the transaction that records the post.

    ``counted=False`` (a post found again by its marker after a crash, or a real draft, which a
    helpdesk may not count as a message) makes the count unknown instead: a wrong "known" that
    runs ahead of the helpdesk's count would hide the customer's next message.
    """
    db.execute(_COUNT_OWN_POST if counted else _FORGET_COUNT,
               {"adapter": adapter, "ticket": ticket_id})


def claim_tickets(engine: Engine, db: Session, limit: int) -> list[TicketRecord]:
    """Claim tickets due for a read, leased like turns (``engine.lease_ttl``, renewed by the
    heartbeat while this instance holds them)."""
    now = utcnow()
    paused = set(db.exec(select(AdapterState.adapter).where(
        col(AdapterState.paused_until).is_not(None), col(AdapterState.paused_until) > now,
    )).all())
    active = [n for n in engine.adapters if n not in paused]
    return claims.claim_tickets(db, active, now, engine.lease_ttl, limit)


def sync_ticket(engine: Engine, claimed: TicketRecord) -> None:
    """Read one claimed ticket's conversation and turn new customer messages into work."""
    record, seq = claimed, claimed.change_seq
    assert record.id is not None
    row_id, name, ticket_id = record.id, record.adapter, record.external_id
    adapter = engine.adapters[name]
    try:
        ticket = adapter.get_ticket(ticket_id) if record.remote_updated_at is None and \
            not record.status else None
        messages = adapter.list_messages(ticket or _as_ticket(record))
    except (NotFound, Moved, PermissionDenied) as exc:
        # The adapter's own poll still works (a broken token fails there and pauses the
        # adapter), so a 404/301/403 on this one ticket means it is gone or out of our sight.
        log.info("ticket %s/%s is gone (%s); ending its work", name, ticket_id, type(exc).__name__)
        _finish_gone(engine, row_id, seq, f"ticket no longer available: {type(exc).__name__}")
        return
    except MalformedResponse as exc:
        _sync_failed(engine, row_id, f"malformed helpdesk data: {exc}", give_up=True)
        return
    except RemoteError as exc:
        if isinstance(exc, AuthenticationFailed | RateLimited):
            handle_adapter_error(engine, name, exc, f"reading ticket {ticket_id}")
        _sync_failed(engine, row_id, str(exc), retry_after=exc.retry_after)
        return
    with session_scope(engine.db) as db:
        record = db.get(TicketRecord, row_id)
        if record is None:
            return
        if ticket is not None:
            record.status, record.resolved = ticket.status, ticket.resolved
            record.tags = " ".join(sorted(ticket.tags))
            record.requester_key = sessions.requester_key(
                ticket.requester_email, ticket.requester_id
            )
        apply_conversation(engine, db, record, messages)
        _count_read(engine, db, record, messages, seq)
        record.needs_sync = record.change_seq != seq
        record.sync_after = utcnow()
        record.sync_attempts = 0
        record.sync_error = None
        record.synced_at = utcnow()
        db.add(record)


def _count_read(
    engine: Engine, db: Session, record: TicketRecord, messages: list[Message], seq: int
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


def _sync_failed(
    engine: Engine, row_id: int, reason: str, *, retry_after: float | None = None,
    give_up: bool = False,
) -> None:
    with session_scope(engine.db) as db:
        record = db.get(TicketRecord, row_id)
        if record is None:
            return
        record.sync_attempts += 1
        record.sync_error = reason[:500]
        if give_up or record.sync_attempts >= engine.config.engine.max_attempts:
            log.error("ticket %s/%s: giving up reading it: %s", record.adapter,
                      record.external_id, reason)
            record.needs_sync = False
        else:
            delay = max(retry_after or 0.0, engine.backoff(record.sync_attempts))
            record.sync_after = utcnow() + timedelta(seconds=delay)
        db.add(record)


def _finish_gone(engine: Engine, row_id: int, seq: int, reason: str) -> None:
    with session_scope(engine.db) as db:
        record = db.get(TicketRecord, row_id)
        if record is None:
            return
        record.resolved = True
        record.needs_sync = record.change_seq != seq
        record.sync_error = reason
        _resolve(engine, db, record, reason)
        db.add(record)


def apply_conversation(
    engine: Engine, db: Session, record: TicketRecord, messages: list[Message], *,
    history_ok: bool = False,
) -> None:
    """Store new messages and decide what they mean: a new turn, a cancel, a session close.

    Only public customer messages that came after the last public agent reply, and after the
    adapter's epoch, start work; our own posts (recognised by marker or posted id), agent
    replies, internal notes and system events never do. ``history_ok`` is backfill's: no epoch,
    and messages stored earlier as history (in no turn yet) count as new.
    """
    name = record.adapter
    # Looked up across the adapter, not the ticket: a merge moves messages (same ids) into
    # another ticket, where they are history, not news.
    ids = [m.external_id for m in messages]
    known: dict[str, int | None] = {}
    elsewhere: set[str] = set()
    for start in range(0, len(ids), 500):
        for external_id, turn_id, ticket_id in db.exec(select(
            MessageRecord.external_id, MessageRecord.turn_id, MessageRecord.ticket_id,
        ).where(
            MessageRecord.adapter == name,
            col(MessageRecord.external_id).in_(ids[start:start + 500]),
        )).all():
            known[external_id] = turn_id
            if ticket_id != record.external_id:
                elsewhere.add(ticket_id)
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
        ours = message.external_id in posted_ids or find_marker(message.body) is not None
        if message.role == Role.AGENT and message.public and not ours:
            last_agent_index = index
            if not shadow:
                new_customer.clear()  # a human answered everything before this
        if message.external_id not in known:
            rows.append({
                "adapter": name, "ticket_id": record.external_id,
                "external_id": message.external_id, "role": message.role.value,
                "public": message.public, "ours": ours, "created_at": message.created_at,
                "body": message.body, "turn_id": None,
            })
        elif not history_ok or known[message.external_id] is not None:
            continue
        if message.role == Role.CUSTOMER and message.public and not ours and \
                (epoch is None or message.created_at >= epoch) and index > last_agent_index:
            new_customer.append(message)
    if rows:
        # One executemany, in conversation order (row ids order the conversation: replies.py);
        # an ORM flush of the same rows cost several times as much.
        db.execute(insert(MessageRecord.__table__), rows)  # type: ignore[attr-defined]
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


def _end_merged_sources(
    engine: Engine, db: Session, record: TicketRecord, sources: set[str]
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


def _epoch(engine: Engine, db: Session, name: str) -> datetime:
    """The adapter's epoch: set once by its first poll and never changed, so kept in memory."""
    epoch = engine.epochs.get(name)
    if epoch is None:
        epoch = adapter_state(db, name).epoch
        if epoch is None:
            return utcnow()
        engine.epochs[name] = epoch
    return epoch


def _had_closed_session(db: Session, record: TicketRecord) -> bool:
    return any(s.state != "open" for s in sessions.ticket_sessions(
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
    for key, value in cancelled(reason).items():
        setattr(turn, key, value)


def _resolve(engine: Engine, db: Session, record: TicketRecord, reason: str) -> None:
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
    engine: Engine, db: Session, record: TicketRecord, new_messages: list[Message]
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


def _collect_feedback(engine: Engine, db: Session, record: TicketRecord) -> None:
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
        return
    db.add(Feedback(
        adapter=record.adapter, ticket_id=record.external_id, session_id=latest.session_id,
        site_id=latest.site_id, request_id=latest.request_id, value=value,
    ))
    log.info("ticket %s/%s: %s feedback queued for %s", record.adapter, record.external_id,
             value, latest.request_id)
