"""Backfill for helpdesks whose change feed can be replayed from any time.

Most feeds are a query from a time (Zendesk's export, Freshdesk's list, Zammad's search, Help
Scout's walk), so listing the tickets changed in a window is the same walk from the window's
start, with a position of its own: the live cursor is neither read nor moved. What differs is
how the feed is ordered, which decides where the listing may stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from itertools import takewhile
from typing import Any, ClassVar

from adapters.base import Adapter, Ticket
from adapters.paging import follow_pages


class FeedOrder(Enum):
    """How a replayed change feed is ordered, which says where a backfill listing may stop."""

    LATEST_CHANGE = "latest change"
    """By each ticket's latest change, listing each ticket once: the listing ends at the first
    ticket changed after ``until``."""
    INDEXED_CHANGE = "indexed change"
    """By a change time that can lag the ticket's own (a search index): each page's tickets are
    kept by their own time, and the listing ends after a page with none left in the window."""
    UNORDERED = "unordered"
    """Not by change time (e.g. by creation): every page is read, its tickets kept by time."""

    def inside(self, tickets: list[Ticket], until: datetime | None) -> list[Ticket]:
        """The page's tickets that belong to a window ending at ``until`` (None: now)."""
        def early(ticket: Ticket) -> bool:
            return until is None or ticket.updated_at is None or ticket.updated_at <= until

        if self is FeedOrder.LATEST_CHANGE:
            return list(takewhile(early, tickets))
        return [ticket for ticket in tickets if early(ticket)]

    def past(self, tickets: list[Ticket], inside: list[Ticket]) -> bool:
        """Whether no later page can hold a ticket of the window."""
        if self is FeedOrder.LATEST_CHANGE:
            return len(inside) < len(tickets)
        return self is FeedOrder.INDEXED_CHANGE and bool(tickets) and not inside


class ReplayAdapter(Adapter):
    """An adapter whose change feed can be replayed from any time: backfill is that replay.

    The replay keeps its own position, so the live cursor is neither read nor moved, and
    ``feed_order`` says how its pages are cut to the window.
    """

    feed_order: ClassVar[FeedOrder]
    max_backfill_pages: ClassVar[int] = 10_000
    """A bound for the loop, far beyond any account's feed."""

    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        pages = follow_pages(
            lambda position: self.replay_page(position, since), None,
            limit=self.max_backfill_pages, what=f"{self.name} backfill listing", noun="tickets",
            endpoint="list_tickets", strict=False,
        )
        for tickets in pages:
            inside = self.feed_order.inside(tickets, until)
            yield inside
            if self.feed_order.past(tickets, inside):
                return

    def replay_page(self, position: Any, since: datetime) -> tuple[list[Ticket], Any]:
        """One page of the replay from ``position`` (None: the start, ``since``), and the
        position after it (None: the feed has no more now). The live poll itself, unless the
        feed holds pages a backfill has no use for."""
        page = self.poll_changes(position, since)
        return page.tickets, page.cursor if page.more else None
