"""Who works on what when several instances share one database.

Due rows are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
instances take disjoint batches without waiting on each other; on SQLite the transaction already
holds the write lock (``BEGIN IMMEDIATE``), which gives the same guarantee for one instance.
A claim or an adapter lease carries an expiry that the holder renews by heartbeat; when an
instance dies, its work becomes claimable again once the expiry passes.

Claims are renewed only for the work the holder has in hand (the ids it passes to
``heartbeat``), never for everything that carries its name: a step that died with the database
unreachable leaves a claim that nobody renews, so it expires and the work goes on. Before a
remote side effect, the holder confirms its claim with a conditional write (``confirm``): an
instance that was paused past its lease finds the row taken over and does nothing. A turn whose
post may be under way is taken over only ``posting_grace`` after its claim expired, so that a
post its holder sent has landed (or failed) before the new holder looks for it by its marker.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, func, or_, text, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from connector.core.errors import InstanceConflict
from connector.store.db import (
    Database,
    read_session,
    reported,
    session_scope,
)
from connector.store.models import (
    ACTIVE_TURN_STATES,
    AdapterState,
    ChatSession,
    Feedback,
    FeedbackState,
    SessionState,
    TicketRecord,
    Turn,
    TurnState,
    utcnow,
)
from connector.store.pauses import paused_in
from connector.store.plain import Plain, instance
from connector.store.writer import GroupWriter


def _skip_locked(db: Session, query):  # type: ignore[no-untyped-def]
    if db.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


_TURN_COLUMNS = ", ".join(c.name for c in Turn.__table__.columns)  # type: ignore[attr-defined]
_TICKET_COLUMNS = ", ".join(
    c.name for c in TicketRecord.__table__.columns)  # type: ignore[attr-defined]
_DATETIME = Turn.__table__.c.claim_until.type  # type: ignore[attr-defined]


def _states(states: Iterable[TurnState]) -> str:
    return ", ".join(f"'{s.value}'" for s in states)


@functools.lru_cache(maxsize=16)
def _claim_turns(queued: bool | None, postgresql: bool) -> Plain:
    """One statement takes the due turns and returns them as claimed: a select of the rows and
    an UPDATE of their ids cost two statements and an ever longer id list per batch."""
    states = [s for s in ACTIVE_TURN_STATES if queued is None or (s == TurnState.QUEUED) == queued]
    lock = " FOR UPDATE SKIP LOCKED" if postgresql else ""
    sql = text(f"""
UPDATE turn SET claim_owner = :owner, claim_until = :until
WHERE id IN (
  SELECT id FROM turn
  WHERE state IN ({_states(states)}) AND next_attempt_at <= :now
    AND (claim_until IS NULL
         OR (claim_until < :now AND state <> '{TurnState.POSTING.value}')
         OR claim_until < :grace)
  ORDER BY next_attempt_at LIMIT :limit{lock})
RETURNING {_TURN_COLUMNS}""")
    return Plain(sql.bindparams(*(bindparam(n, type_=_DATETIME) for n in ("until", "now", "grace")))
                 .columns(*Turn.__table__.columns))  # type: ignore[attr-defined]


def claim_turns(
    db: Connection | Session, owner: str, now: datetime, ttl: timedelta, limit: int, *,
    queued: bool | None = None, posting_grace: timedelta = timedelta(0),
) -> list[Turn]:
    """Lease up to ``limit`` due turns to ``owner``, oldest due first; returns the rows as
    claimed, so a step starts from them without reading its turn again. ``queued``: only turns
    still to be asked (True), or only the others (False). A ``posting`` turn whose claim expired
    is taken over only ``posting_grace`` later (see the module docstring)."""
    statement = _claim_turns(queued, _dialect(db) == "postgresql")
    claimed = statement.run(db, {"owner": owner, "until": now + ttl, "now": now,
                                 "grace": now - posting_grace, "limit": limit})
    turns = [instance(Turn, claimed.keys, row) for row in claimed]
    return sorted(turns, key=lambda t: (t.next_attempt_at, t.id or 0))


@functools.lru_cache(maxsize=16)
def _claim_tickets(adapters: tuple[str, ...], postgresql: bool) -> Plain:
    """Like ``_claim_turns``; one statement per set of adapters (they are few and fixed)."""
    names = ", ".join(f":adapter{n}" for n in range(len(adapters)))
    lock = " FOR UPDATE SKIP LOCKED" if postgresql else ""
    sql = text(f"""
UPDATE ticket SET sync_after = :until
WHERE id IN (
  SELECT id FROM ticket
  WHERE needs_sync AND sync_after <= :now AND adapter IN ({names})
  ORDER BY sync_after LIMIT :limit{lock})
RETURNING {_TICKET_COLUMNS}""")
    return Plain(sql.bindparams(*(bindparam(n, type_=_DATETIME) for n in ("until", "now")))
                 .columns(*TicketRecord.__table__.columns))  # type: ignore[attr-defined]


def claim_tickets(
    db: Connection | Session, adapters: list[str], now: datetime, ttl: timedelta, limit: int
) -> list[TicketRecord]:
    """Lease tickets due for a conversation read; returns the rows as claimed, in the order
    they were first seen (row ids).

    The lease is ``sync_after`` itself: pushed into the future while the read runs (and renewed
    by the holder's heartbeat), so no other instance (or tick) reads the same ticket meanwhile.
    A read covers the row's ``change_seq`` as claimed; a poll that sees a newer change bumps
    it, and the ticket is read again.
    """
    if not adapters:
        return []
    statement = _claim_tickets(tuple(adapters), _dialect(db) == "postgresql")
    claimed = statement.run(db, {"until": now + ttl, "now": now, "limit": limit,
                                 **{f"adapter{n}": a for n, a in enumerate(adapters)}})
    return sorted((instance(TicketRecord, claimed.keys, row) for row in claimed),
                  key=lambda r: r.id or 0)


def _dialect(db: Connection | Session) -> str:
    return db.get_bind().dialect.name if isinstance(db, Session) else db.dialect.name


def hold_adapter(db: Session, adapter: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease to poll ``adapter``; False while another live instance has it."""
    state = db.get(AdapterState, adapter)
    if state is None:
        db.add(AdapterState(adapter=adapter, lease_owner=owner, lease_until=now + ttl))
        db.flush()
        return True
    result = db.execute(
        update(AdapterState)
        .where(AdapterState.adapter == adapter,
               or_(AdapterState.lease_owner == owner, col(AdapterState.lease_owner).is_(None),
                   col(AdapterState.lease_until) < now))
        .values(lease_owner=owner, lease_until=now + ttl)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def claim_work(
    writer: GroupWriter, owner: str, ttl: timedelta, *, adapters: list[str], tickets: int,
    turns: list[tuple[int, bool | None]], posting_grace: timedelta,
) -> tuple[list[TicketRecord], list[Turn]]:
    """One dispatch's claims in one write: up to ``tickets`` reads of the adapters not paused,
    then each batch of ``turns`` (limit, ``queued`` as in ``claim_turns``).

    Through the group writer: a claim decides nothing for the writes it shares a commit with,
    and it never waits on a row (``SKIP LOCKED`` on PostgreSQL; SQLite's writer already holds
    the lock), so it cannot hold their batch up. In a transaction of its own it was half a
    commit per message, most of them taking few rows.
    """
    def run(connection: Connection) -> tuple[list[TicketRecord], list[Turn]]:
        records: list[TicketRecord] = []
        if tickets:
            now = utcnow()
            paused = paused_in(connection, now)
            records = claim_tickets(connection, [a for a in adapters if a not in paused], now,
                                    ttl, tickets)
        due: list[Turn] = []
        for limit, queued in turns:
            due += claim_turns(connection, owner, utcnow(), ttl, limit, queued=queued,
                               posting_grace=posting_grace)
        return records, due

    return writer.write(run)


Row = ChatSession | Feedback


def claim_side_effects(
    db: Database, model: type[ChatSession] | type[Feedback], owner: str, ttl: timedelta,
    limit: int,
) -> list[ChatSession] | list[Feedback]:
    """Lease due session closes or feedback sends, like turns: with several instances each
    close and each feedback is sent by the one that holds it, not by every instance at once."""
    pending = ChatSession.state == SessionState.CLOSING if model is ChatSession else \
        Feedback.state == FeedbackState.PENDING
    key = _key_column(model)
    now = utcnow()
    due = (pending, model.next_attempt_at <= now,
           or_(col(model.claim_until).is_(None), col(model.claim_until) < now))
    # Housekeeping asks on every tick, and mostly nothing is due: a read-only look first keeps
    # those ticks from taking SQLite's write lock, which the steps' writes queue for.
    with read_session(db) as session:
        if session.exec(select(key).where(*due).limit(1)).first() is None:
            return []
    with session_scope(db) as session:
        query = select(model).where(*due).order_by(col(model.next_attempt_at)).limit(limit)
        rows = list(session.exec(_skip_locked(session, query)).all())
        if rows:
            until = now + ttl
            session.execute(update(model).where(col(key).in_([_key(r) for r in rows]))
                            .values(claim_owner=owner, claim_until=until))
            for row in rows:
                set_committed_value(row, "claim_owner", owner)
                set_committed_value(row, "claim_until", until)
    return rows  # type: ignore[return-value]


def _key(row: Row) -> object:
    return row.session_id if isinstance(row, ChatSession) else row.id


def _key_column(model: type[ChatSession] | type[Feedback]):  # type: ignore[no-untyped-def]
    return model.session_id if model is ChatSession else model.id  # type: ignore[union-attr]


def confirm(db: Database, row: Row, owner: str, ttl: timedelta, **stamp: object) -> bool:
    """The fence before a close or feedback call: True (and the claim extended, ``stamp``
    written) only while ``owner`` still holds the row."""
    return finish(db, row, owner, release=False, claim_until=utcnow() + ttl, **stamp)


def finish(db: Database, row: Row, owner: str, *, release: bool = True,
           **values: object) -> bool:
    """Write ``values`` to a claimed close or feedback (and, with ``release``, give the claim
    up), if ``owner`` still holds it; True when written."""
    model = type(row)
    released = {"claim_owner": None, "claim_until": None} if release else {}
    with session_scope(db) as session:
        result = session.execute(update(model).where(
            _key_column(model) == _key(row), model.claim_owner == owner,
        ).values(**released, **values))
    return result.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Held:
    """What one instance has in hand right now: the only claims its heartbeat renews."""

    tickets: list[int] = field(default_factory=list)  # reads (their lease is ``sync_after``)
    turns: list[int] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    feedback: list[int] = field(default_factory=list)


def heartbeat(db: Database, owner: str, ttl: timedelta, held: Held) -> None:
    """Extend ``owner``'s adapter leases and the claims of the work in ``held``.

    A read's lease is extended only while still in the future, so a read that just finished is
    not pushed back. Claims not in ``held`` are left to expire: their step is over, or died.

    Rows locked right now are skipped (``SKIP LOCKED`` on PostgreSQL): a group commit holds
    turns and tickets in whatever order its writes came, so waiting for them here, in another
    order, could deadlock with it. A row skipped is being written by its holder's own step,
    and the next heartbeat, a third of the lease later, extends it.
    """
    now = utcnow()
    until = now + ttl
    with session_scope(db) as session:
        session.execute(update(AdapterState).where(AdapterState.lease_owner == owner)
                        .values(lease_until=until))
        for model, key, ids in ((Turn, Turn.id, held.turns),
                                (Feedback, Feedback.id, held.feedback),
                                (ChatSession, ChatSession.session_id, held.sessions),
                                (TicketRecord, TicketRecord.id, held.tickets)):
            mine = TicketRecord.sync_after > now if model is TicketRecord else \
                model.claim_owner == owner
            values = {"sync_after" if model is TicketRecord else "claim_until": until}
            for start in range(0, len(ids), 500):
                free = select(key).where(col(key).in_(ids[start:start + 500]), mine) \
                    .with_for_update(skip_locked=True)
                session.execute(update(model).where(col(key).in_(free)).values(**values))


def release_all(db: Session, owner: str) -> None:
    """Give up everything ``owner`` holds: at a clean stop, so other instances need not wait
    for expiry, and at start, for claims a killed run under the same instance id left."""
    db.execute(update(AdapterState).where(AdapterState.lease_owner == owner)
               .values(lease_owner=None, lease_until=None))
    for model in (Turn, ChatSession, Feedback):
        db.execute(update(model).where(model.claim_owner == owner)
                   .values(claim_owner=None, claim_until=None))


def take_back(db: Database, owner: str, *, sole: bool) -> None:
    """At start: release what a killed run under ``owner`` left claimed and, for the only
    instance (``sole``: it holds the SQLite file), every claim and poll lease, which can only
    be a killed predecessor's; its claimed reads become due now instead of at lease expiry."""
    with session_scope(db) as session:
        release_all(session, owner)
        if sole:
            for model in (Turn, ChatSession, Feedback):
                session.execute(update(model).where(col(model.claim_owner).is_not(None))
                                .values(claim_owner=None, claim_until=None))
            session.execute(update(AdapterState).where(col(AdapterState.lease_owner).is_not(None))
                            .values(lease_owner=None, lease_until=None))
            session.execute(update(TicketRecord).where(col(TicketRecord.needs_sync))
                            .values(sync_after=utcnow()))


def hand_back(db: Database, owner: str, unread: list[int]) -> None:
    """At a clean stop: release everything ``owner`` holds, and make the reads it claimed but
    never started (``unread``) due now, for any instance. Raises ``StoreError``: a stop with
    the database gone leaves the claims to expire."""
    with reported(), session_scope(db) as session:
        release_all(session, owner)
        if unread:
            session.execute(update(TicketRecord).where(col(TicketRecord.id).in_(unread))
                            .values(sync_after=utcnow()))


class Outstanding(NamedTuple):
    """What is left to do, for ``run --once``: counts, and the adapters paused right now."""

    active: int  # turns in progress
    syncing: int  # tickets due for a read, of the given adapters
    closing: int
    feedback: int
    paused: list[str]


def outstanding(db: Database, adapters: list[str]) -> Outstanding:
    with read_session(db) as session:
        def count(model, *where) -> int:  # type: ignore[no-untyped-def]
            return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

        active = count(Turn, col(Turn.state).in_(ACTIVE_TURN_STATES))
        return Outstanding(
            active,
            count(TicketRecord, col(TicketRecord.needs_sync),
                  col(TicketRecord.adapter).in_(adapters)),
            count(ChatSession, ChatSession.state == SessionState.CLOSING),
            count(Feedback, Feedback.state == FeedbackState.PENDING),
            sorted(set(adapters) & set(paused_in(session, utcnow()))),
        )


def lock_sqlite_file(engine: Engine) -> IO[str] | None:
    """Refuse a second instance on the same SQLite file (its locking is per host, not per row).

    Returns the open lock file, to keep for the process's lifetime; None for other databases.
    """
    if engine.dialect.name != "sqlite" or not engine.url.database or \
            engine.url.database == ":memory:":
        return None
    path = Path(f"{Path(engine.url.database).resolve()}.lock")
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InstanceConflict(
            f"{engine.url.database} is already used by connector instance {holder}; SQLite "
            "supports one instance: stop it, or use PostgreSQL (database.url: "
            "postgresql+psycopg://...) to run several"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.uname().nodename}-{os.getpid()}\n")
    handle.flush()
    return handle
