"""Front's event feed as a change feed: where a walk stands, what it asks, what it reports.

``GET /events`` lists every event of the company with its conversation. A walk asks for the
events after a time, oldest first, and follows ``_pagination.next`` to the end; the next walk
starts a little before the newest event the walk saw (``OVERLAP``), because it is not documented
whether ``q[after]`` is exclusive or whether an event can show up after a later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapters.base import Ticket, as_dict
from adapters.cursor import Cursor, Millis
from adapters.payload import unix_time
from adapters.times import utc

OVERLAP = timedelta(seconds=2)
EVENT_TYPES = (
    "inbound", "outbound", "out_reply", "comment", "archive", "reopen", "trash", "restore",
    "reminder", "move", "conversations_merged", "ticket_status_update",
)
"""Events that change what the engine must know: a message, a comment, or the conversation's
state (archived, deleted, reopened, merged, a ticket status). Tags and assignments do not."""


@dataclass(frozen=True)
class EventWalk(Cursor):
    """One walk through the events after ``after``: ``newest`` is the latest ``emitted_at`` seen
    so far in it, ``page_token`` the page to read next (None: the first)."""

    kind = "front-events"
    version = 1

    after: Millis
    newest: Millis | None = None
    page_token: str | None = None

    def next_page(self, newest: datetime | None, token: str) -> EventWalk:
        return EventWalk(self.after, _later(self.newest, newest), token)

    def finished(self, newest: datetime | None) -> EventWalk:
        """The walk after this one: from the newest event seen, less the overlap, never from
        earlier than this walk began (a walk that saw nothing starts where it started)."""
        latest = _later(self.newest, newest)
        if latest is None:
            return EventWalk(self.after)
        return EventWalk(max(self.after, latest - OVERLAP))


def events_query(walk: EventWalk, page_size: int, inbox_ids: list[str]) -> dict[str, Any]:
    """The query of a walk's page. The filter is sent on every page as well as the token, so a
    next link that carries only its token still reads the same selection."""
    query: dict[str, Any] = {
        "q[after]": f"{utc(walk.after).timestamp():.3f}",
        "q[types][]": list(EVENT_TYPES),
        "sort_by": "created_at",
        "sort_order": "asc",
        "limit": page_size,
    }
    if inbox_ids:
        query["q[inboxes][]"] = list(inbox_ids)
    if walk.page_token:
        query["page_token"] = walk.page_token
    return query


def newest_event(events: list[Any]) -> datetime | None:
    times = [when for event in events
             if (when := unix_time(as_dict(event).get("emitted_at"))) is not None]
    return max(times) if times else None


def latest_per_conversation(tickets: list[tuple[datetime, Ticket]]) -> list[Ticket]:
    """Each conversation once, as its latest event on the page showed it, oldest first."""
    latest: dict[str, tuple[datetime, Ticket]] = {}
    for when, ticket in tickets:
        known = latest.get(ticket.external_id)
        if known is None or when >= known[0]:
            latest[ticket.external_id] = (when, ticket)
    return [ticket for _, ticket in sorted(latest.values(), key=lambda pair: pair[0])]


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    known = [when for when in (one, other) if when is not None]
    return max(known) if known else None
