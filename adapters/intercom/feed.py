"""Where a poll of Intercom's conversation search stands, and the search it sends.

A walk is the pages of one search, linked by Intercom's opaque ``starting_after`` cursors. The
search asks from two days before ``since``: Intercom matches date filters of its search by
calendar day in the workspace's timezone (documented for contacts, not ruled out for
conversations), so asking for the exact second could skip the rest of a day. The exact cut is
made here, on each conversation's own ``updated_at``. The next walk starts from Intercom's clock
at the first page of this one, minus an overlap: the search is served from an index that may
show a change a little late, and a conversation changed mid-walk may sit behind the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapters.base import Ticket, as_dict
from adapters.cursor import Cursor, Seconds
from adapters.payload import text_or_none

SEARCH_SLACK = timedelta(days=2)  # more than a calendar day in any timezone
INDEX_OVERLAP = timedelta(seconds=60)


@dataclass(frozen=True)
class Scan(Cursor):
    """One walk through the conversations changed since ``since``.

    ``after`` is Intercom's cursor of the next page (None: the first); ``started`` the server
    time of the walk's first page (None before it).
    """

    kind = "intercom"
    version = 1

    since: Seconds
    after: str | None = None
    started: Seconds | None = None


def search_body(since: datetime, per_page: int, after: str | None) -> dict[str, Any]:
    """The search for one page of the walk from ``since``."""
    pagination: dict[str, Any] = {"per_page": per_page}
    if after:
        pagination["starting_after"] = after
    return {
        "query": {"field": "updated_at", "operator": ">",
                  "value": int((since - SEARCH_SLACK).timestamp())},
        "pagination": pagination,
    }


def next_cursor(body: dict[str, Any]) -> str | None:
    """The cursor of the page after this one; None on the last page."""
    return text_or_none(as_dict(as_dict(body.get("pages")).get("next")).get("starting_after"))


def changed_since(tickets: list[Ticket], since: datetime) -> list[Ticket]:
    """The tickets the walk is for; one without a time is kept (a re-read costs little)."""
    return [t for t in tickets if t.updated_at is None or t.updated_at >= since]
