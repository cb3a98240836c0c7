"""The change feed of JSM: JQL on ``updated`` through ``/rest/api/3/search/jql``.

Jira's search lags behind changes and compares times to the minute, so a pass never trusts its
own bound: each one starts ``overlap`` before the newest ``updated`` it has seen, rounded down to
the minute, and the position remembers which ``(issue, updated)`` pairs it already reported so a
re-read reports nothing twice. Within a pass, pages follow Jira's ``nextPageToken``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import as_dict
from adapters.cursor import Cursor, Millis
from adapters.payload import numeric_id, parse_time

SEARCH_PATH = "/rest/api/3/search/jql"
SEARCH_FIELDS = "updated,status,summary,reporter,project,created"


@dataclasses.dataclass(frozen=True)
class Hit:
    """One usable search result: the issue as the index has it."""

    issue_id: str
    updated: str  # as Jira wrote it: with the id, what tells a new change from a re-read
    when: datetime
    fields: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SearchPosition(Cursor):
    """Where the search resumes: the pass's time bound, Jira's token for its next page (None:
    the pass starts at its first page) and what was already reported at or after ``since``.

    Whether a page token holds its place when an issue of an earlier page changes (and moves to
    the end of the order) is not documented; if it counts positions, the issue behind it slips
    onto a page already read. So a pass that went past its first page (``paged``) and reported
    something (``fresh``) is followed by another pass from the same bound, which reports only
    what the first one missed.
    """

    kind = "jsm"
    version = 1

    since: Millis
    token: str | None = None
    seen: dict[str, str] = dataclasses.field(default_factory=dict)
    paged: bool = False
    fresh: bool = False

    def restarted(self) -> SearchPosition:
        """The same pass from its first page, for a page token Jira no longer knows (they
        expire after 7 days): re-reading costs requests, never a change."""
        return SearchPosition(self.since, None, self.seen, self.paged, self.fresh)

    def after(self, hits: list[Hit], token: str | None,
              overlap: float) -> tuple[list[Hit], SearchPosition, bool]:
        """The hits not reported yet, the position after their page (the next page of this
        pass, the same pass again, or a new pass from ``overlap`` before the newest change),
        and whether the feed has more now."""
        seen = dict(self.seen)
        fresh = [hit for hit in hits if seen.get(hit.issue_id) != hit.updated]
        seen.update((hit.issue_id, hit.updated) for hit in fresh)
        reported = self.fresh or bool(fresh)
        if token:
            return fresh, SearchPosition(self.since, token, seen, True, reported), True
        if self.paged and reported:
            return fresh, SearchPosition(self.since, None, seen), True
        newest = max(filter(None, map(parse_time, seen.values())), default=self.since)
        since = max(self.since, newest - timedelta(seconds=overlap))
        return fresh, SearchPosition(since, None, _still_matching(seen, since)), False


def jql(since: datetime, projects: list[str]) -> str:
    """The query of one pass. The time is unquoted epoch milliseconds, which Jira reads the same
    in every user's time zone (a quoted date-time is the searching user's local time), rounded
    down to the minute, the precision Jira compares at."""
    clauses = [f"updated >= {minute_millis(since)}"]
    if projects:
        keys = ", ".join(f'"{_jql_escape(key)}"' for key in projects)
        clauses.append(f"project in ({keys})")
    return " AND ".join(clauses) + " ORDER BY updated ASC, key ASC"


def minute_millis(when: datetime) -> int:
    """``when`` as epoch milliseconds, rounded down to its minute."""
    whole = when.astimezone(UTC).replace(second=0, microsecond=0)
    return int(whole.timestamp()) * 1000


def read_hit(item: Any) -> Hit | None:
    """A search result, or None when it has no issue id or no readable ``updated``."""
    issue = as_dict(item)
    fields = as_dict(issue.get("fields"))
    issue_id, updated = numeric_id(issue.get("id")), fields.get("updated")
    when = parse_time(updated)
    if issue_id is None or not isinstance(updated, str) or when is None:
        return None
    return Hit(issue_id, updated, when, fields)


def hit_label(item: Any, index: int) -> str:
    """How a log line names an unusable result: its id when it has one, else its place."""
    issue_id = numeric_id(as_dict(item).get("id"))
    return f"issue {issue_id}" if issue_id else f"result {index}"


def _still_matching(seen: dict[str, str], since: datetime) -> dict[str, str]:
    """The reported pairs the next pass can still return (rounded down to the minute, as the
    query is)."""
    bound = since.astimezone(UTC).replace(second=0, microsecond=0)
    return {issue: updated for issue, updated in seen.items()
            if (when := parse_time(updated)) is not None and when >= bound}


def _jql_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
