"""Per-adapter state: the poll cursor, its lease, and pauses.

The cursor advances only in the transaction that stores the tickets its page covered
(``record_page``), so a crash between a page and its write loses nothing: the next poll reads
the same page again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from connector.store import claims
from connector.store.db import Database, lost_a_race, session_scope
from connector.store.models import AdapterState
from connector.store.tickets import Report, save_reports

log = logging.getLogger(__name__)


def state_of(db: Session, name: str) -> AdapterState:
    """The adapter's row, made (in the caller's transaction) on first use."""
    state = db.get(AdapterState, name)
    if state is None:
        state = AdapterState(adapter=name)
        db.add(state)
    return state


def paused_at(state: AdapterState | None, now: datetime) -> bool:
    return bool(state and state.paused_until and state.paused_until > now)


def pause(db: Database, name: str, until: datetime, reason: str) -> None:
    """Stop calling a helpdesk until ``until``; shown in ``status``."""
    with session_scope(db) as session:
        state = state_of(session, name)
        state.paused_until = until
        state.pause_reason = reason
        state.consecutive_failures += 1


def note_failure(db: Database, name: str) -> None:
    with session_scope(db) as session:
        state_of(session, name).consecutive_failures += 1


class PollStart(NamedTuple):
    cursor: str | None
    epoch: datetime


def start_poll(db: Database, name: str, owner: str, now: datetime, ttl: timedelta,
               first_epoch: datetime) -> PollStart | None:
    """Take the adapter's poll lease and note the poll; where the feed continues from. None:
    another instance polls it, or it is paused. The first poll ever sets the epoch (messages
    older than it are history) to ``first_epoch``, and it never changes after."""
    with session_scope(db) as session:
        if not claims.hold_adapter(session, name, owner, now, ttl):
            return None
        state = state_of(session, name)
        if paused_at(state, now):
            return None
        state.last_poll_at = now
        if state.epoch is None:
            state.epoch = first_epoch
        return PollStart(state.cursor, state.epoch)


def record_page(db: Database, name: str, reports: list[Report], cursor: str | None,
                now: datetime, *, verify: bool = True) -> bool:
    """Store a feed page's reports and move the cursor past them, in one transaction; a page
    that came back clears a pause and the failure count. False, with nothing written, when a
    ticket changed since its report was decided (``tickets.save_reports``), or when PostgreSQL
    ended a deadlock by rolling this transaction back: a page marks many ticket rows, in its
    own order, while a group commit may hold some of them (a read's outcome) and want others.
    Either way the page is decided again on the rows as they now are."""
    try:
        with session_scope(db) as session:
            if not save_reports(session, name, reports, verify=verify):
                session.rollback()
                return False
            state = state_of(session, name)
            if cursor != state.cursor:
                state.cursor_moved_at = now
            state.cursor = cursor
            state.last_poll_ok_at = now
            state.consecutive_failures = 0
            state.paused_until = None
            state.pause_reason = None
    except DBAPIError as exc:
        if not lost_a_race(exc):
            raise
        log.info("adapter %s: a feed page met another transaction on its rows (%s); "
                 "deciding it again", name, exc.orig.__class__.__name__)
        return False
    return True
