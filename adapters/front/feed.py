"""Front's event feed as a change feed: where a walk stands, what it asks, what it reports.

``GET /events`` lists every event of the company with its conversation. A walk asks for the
events after a time, oldest first, and follows ``_pagination.next`` to the end; the next walk
starts a little before the newest event the walk saw (``OVERLAP``), because it is not documented
whether ``q[after]`` is exclusive or whether an event can show up after a later one. The events
of that overlap were reported already, so the walk remembers their ids and skips them: a quiet
account does not have its last conversation read again at every poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.base import Ticket, as_dict
from adapters.cursor import Cursor, Millis
from adapters.payload import prefixed_id, unix_time
from adapters.times import utc

OVERLAP = timedelta(seconds=2)
MAX_SEEN = 500  # ids remembered from the overlap; one more is only a conversation read twice
EVENT_TYPES = (
    "inbound", "outbound", "out_reply", "comment", "archive", "reopen", "trash", "restore",
    "reminder", "move", "conversations_merged", "ticket_status_update",
)
"""Events that change what the engine must know: a message, a comment, or the conversation's
state (archived, deleted, reopened, merged, a ticket status). Tags and assignments do not."""


@dataclass(frozen=True)
class EventWalk(Cursor):
    """One walk through the events after ``after``: ``newest`` is the latest ``emitted_at`` seen
    so far in it, ``page_token`` the page to read next (None: the first), ``seen`` the events
    already reported that a walk may meet again (id -> time)."""

    kind = "front-events"
    version = 1

    after: Millis
    newest: Millis | None = None
    page_token: str | None = None
    seen: dict[str, Millis] = field(default_factory=dict)

    def unseen(self, events: list[Any]) -> list[Any]:
        return [event for event in events if as_dict(event).get("id") not in self.seen]

    def next_page(self, events: list[Any], token: str) -> EventWalk:
        newest, seen = self._remember(events)
        return EventWalk(self.after, newest, token, seen)

    def finished(self, events: list[Any]) -> EventWalk:
        """The walk after this one: from the newest event seen, less the overlap, never from
        earlier than this walk began (a walk that saw nothing starts where it started)."""
        newest, seen = self._remember(events)
        after = self.after if newest is None else max(self.after, newest - OVERLAP)
        return EventWalk(after, seen=seen)

    def _remember(self, events: list[Any]) -> tuple[datetime | None, dict[str, datetime]]:
        """The newest time so far, and the ids a later walk can still meet: those not older
        than the overlap before the newest event (the next walk starts there)."""
        seen = dict(self.seen)
        for event in events:
            raw = as_dict(event)
            event_id, when = prefixed_id(raw.get("id"), "evt"), unix_time(raw.get("emitted_at"))
            if event_id is not None and when is not None:
                seen[event_id] = when
        newest = _later(self.newest, newest_event(events))
        if newest is not None:
            seen = {key: when for key, when in seen.items() if when >= newest - OVERLAP}
        kept = sorted(seen.items(), key=lambda item: item[1])[-MAX_SEEN:]
        return newest, dict(kept)


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
