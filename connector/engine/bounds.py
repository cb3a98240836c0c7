"""Vendor strings cut to what the store's columns hold, at the one place they enter the engine.

PostgreSQL refuses a value longer than its column where SQLite stores it anyway, so an
over-long id or channel name from a helpdesk (or from a broken proxy) would fail a poll or a
read on every attempt, forever, on one database and never in the tests on the other. Ids cannot
be cut (two long ids sharing a prefix would become one), so a long message id is stored as a
digest of itself: stable, so deduplication still works, and unique in practice. Labels (status,
channel) are only shown and compared, so they are shortened.
"""

from __future__ import annotations

import dataclasses
import hashlib

from adapters.base import Message

MAX_ID = 128  # message.external_id, ticket.external_id, turn.posted_id
MAX_LABEL = 64  # ticket.status, ticket.channel


def stored_id(value: str) -> str:
    """``value`` when it fits its column, else a digest standing for it."""
    if len(value) <= MAX_ID:
        return value
    return f"sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def label(value: str | None) -> str | None:
    return value if value is None or len(value) <= MAX_LABEL else value[:MAX_LABEL]


def ticket_id_fits(value: str) -> bool:
    """A ticket id is sent back to the helpdesk, so it cannot stand in for a digest: a ticket
    whose id does not fit is reported as a malformed item and left out."""
    return len(value) <= MAX_ID


def message(value: Message) -> Message:
    if len(value.external_id) <= MAX_ID:
        return value
    return dataclasses.replace(value, external_id=stored_id(value.external_id))
