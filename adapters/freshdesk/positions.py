"""Where Freshdesk's change feed stands between polls, and how one page moves it.

The feed is the ticket list re-anchored on ``updated_at`` (see ``adapters.freshdesk.adapter``),
interleaved now and then with a sweep of trash and spam. Both positions live in one cursor, and
everything here is arithmetic on them: no request is made, so each rule can be read, and
tested, apart from the HTTP around it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainSerializer, PositiveInt

from adapters.base import Ticket
from adapters.cursor import Cursor, Seconds

MAX_PAGE = 300  # Freshdesk's documented page-depth cap on list endpoints
SETTLE = 5.0  # seconds after which no further change can land in a past updated_at second
View = Literal["deleted", "spam"]
REMOVED_VIEWS: tuple[View, ...] = ("deleted", "spam")  # list filters for what the list leaves out


def _every_view(anchors: dict[View, datetime]) -> dict[View, datetime]:
    if set(anchors) != set(REMOVED_VIEWS):
        raise ValueError(f"needs an anchor for each of {REMOVED_VIEWS}")
    return anchors


Anchors = Annotated[dict[View, Seconds], AfterValidator(_every_view)]
TicketIds = Annotated[frozenset[Annotated[str, Field(pattern=r"^[0-9]+$")]],
                      PlainSerializer(lambda ids: sorted(ids, key=int), return_type=list[str])]


@dataclass(frozen=True)
class Position:
    """Where the ticket list resumes: a fresh query from ``since``, at ``page`` of it.

    ``seen`` holds tickets already reported whose ``updated_at`` is ``since`` itself, read after
    that second had settled: the next query returns them again (``updated_since`` includes its
    second) and they are skipped. A ticket read while its second was young is not kept there,
    because a further change within the same second leaves ``updated_at`` unchanged.
    ``newest`` is the newest ``updated_at`` read on the pages of this query so far.
    """

    since: Seconds
    page: PositiveInt = 1
    seen: TicketIds = frozenset()
    newest: Seconds | None = None

    def after(self, tickets: list[Ticket], more: bool, now: datetime) -> Position:
        """The position after a page of ``tickets`` (``self`` at the depth cap).

        The next query starts at the page's newest ``updated_at``, but never later than
        ``SETTLE`` seconds before the server's clock: a change can still land in a young second
        without moving ``updated_at``, so young seconds are read again (an overlap) and only
        the anchor's settled second is de-duplicated. When the anchor cannot move, a fresh
        query would return the same page, so the walk goes one page deeper instead; once that
        run of pages ends it stays on its last page, or starts over while what it read is
        young (earlier pages may have changed).
        """
        newest = max((t.updated_at for t in tickets if t.updated_at is not None),
                     default=self.since)
        settled_until = now.replace(microsecond=0) - timedelta(seconds=SETTLE)
        since = max(self.since, min(newest, settled_until))
        at_since = {t.external_id for t in tickets if t.updated_at == since}
        if since > self.since:
            return Position(since, 1, frozenset(at_since))
        seen = self.seen | at_since if since <= settled_until else self.seen
        read = max(newest, self.newest or since)
        if more:
            return replace(self, page=self.page + 1, seen=seen, newest=read) \
                if self.page < MAX_PAGE else self
        if read <= settled_until:
            return Position(since, self.page, seen, read)
        return Position(since, 1, seen)


@dataclass(frozen=True)
class Sweep:
    """The look into trash and spam, which the ticket list leaves out.

    ``at`` is when the last round began (server clock) and ``before`` when the round ahead of
    it began; ``anchors`` is the oldest ``updated_at`` each view still reports, ``pending`` the
    views still to read in the current round, and ``page`` the page of the first of them.
    """

    at: Seconds
    anchors: Anchors
    pending: tuple[View, ...] = ()
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    before: Seconds | None = None

    def begin(self, now: datetime) -> Sweep:
        """A new round over every view, starting now."""
        return replace(self, at=now, before=self.at, pending=REMOVED_VIEWS, page=1)

    def after(self, full: bool) -> Sweep:
        """The sweep after a page of its first pending view (``full``: more pages may follow).

        A view's next round keeps what changed since the round before this one began (less
        ``SETTLE``), so a ticket that a shifting page hid from one round is read by the next.
        """
        if full and self.page < MAX_PAGE:
            return replace(self, page=self.page + 1)
        view = self.pending[0]
        settled = (self.before or self.at).replace(microsecond=0) - timedelta(seconds=SETTLE)
        return replace(self, anchors={**self.anchors, view: max(self.anchors[view], settled)},
                       pending=self.pending[1:], page=1)


@dataclass(frozen=True)
class FeedCursor(Cursor):
    """The feed's position and the sweep's, which take turns in one cursor."""

    kind = "freshdesk"
    version = 3

    feed: Position
    sweep: Sweep

    @classmethod
    def start(cls, when: datetime) -> FeedCursor:
        return cls(Position(when), Sweep(when, dict.fromkeys(REMOVED_VIEWS, when)))

    @classmethod
    def upgrade(cls, text: str, data: Any) -> FeedCursor | None:
        """Version 2 kept both positions flat in one object; ``sweep_page`` and
        ``swept_before`` came late in it: without them the sweep is at its first page and the
        round before began at ``swept``."""
        if not isinstance(data, dict) or data.get("v") != 2 or "cursor" in data:
            return None
        return cls.from_fields({
            "feed": {key: data.get(key) for key in ("since", "page", "seen", "newest")},
            "sweep": {"at": data.get("swept"), "anchors": data.get("removed"),
                      "pending": data.get("sweep"), "page": data.get("sweep_page", 1),
                      "before": data.get("swept_before", data.get("swept"))},
        })
