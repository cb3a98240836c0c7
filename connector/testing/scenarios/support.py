"""What the scenarios share: adapters built from a driver's settings, the change feed read to
its end, and checks on what came back and what was logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import Adapter, ChangePage, Message, Role, Ticket
from adapters.registry import adapter_class
from connector.testing.helpdesk_driver import HelpdeskDriver

MAX_PAGES = 60  # a change feed that pages longer than this for a handful of tickets never ends
MARKER_PREFIX = "AI draft, Uppzy ref "


def unique(text: str) -> str:
    """``text`` with a token no other ticket on a shared test server carries."""
    return f"{text} [{uuid.uuid4().hex[:10]}]"


def build_adapter(driver: HelpdeskDriver, settings: dict[str, Any] | None = None,
                  **extra: Any) -> Adapter:
    """The adapter the driver's settings describe, built as the daemon builds it."""
    raw = settings if settings is not None else driver.adapter_settings("conformance", **extra)
    cls = adapter_class(raw["type"])
    return cls(cls.settings_model.model_validate(raw))


@contextmanager
def open_adapter(driver: HelpdeskDriver, **extra: Any) -> Iterator[Adapter]:
    adapter = build_adapter(driver, **extra)
    try:
        yield adapter
    finally:
        adapter.close()


def recent() -> datetime:
    """A ``start_from`` for first polls: a little before now."""
    return datetime.now(UTC) - timedelta(seconds=5)


def drain(adapter: Adapter, cursor: str | None,
          on_page: Callable[[int, ChangePage], None] | None = None) -> tuple[list[ChangePage], str]:
    """Every page from ``cursor`` until ``more`` is False; the cursor to resume from."""
    pages: list[ChangePage] = []
    start = recent()
    for number in range(MAX_PAGES):
        page = adapter.poll_changes(cursor, start)
        assert isinstance(page.cursor, str) and page.cursor, "a page must carry a cursor"
        pages.append(page)
        if on_page is not None:
            on_page(number, page)
        if not page.more:
            return pages, page.cursor
        assert page.cursor != cursor or page.tickets, (
            f"page {number} says more=True but neither moved the cursor nor brought tickets"
        )
        cursor = page.cursor
    raise AssertionError(f"the change feed still had more after {MAX_PAGES} pages")


def baseline(adapter: Adapter, driver: HelpdeskDriver) -> str:
    """A cursor at 'now': what a running daemon holds before the scenario acts."""
    driver.settle()
    return drain(adapter, None)[1]


def reported(pages: list[ChangePage]) -> list[str]:
    return [t.external_id for page in pages for t in page.tickets]


def last_report(pages: list[ChangePage], ticket_id: str) -> Ticket | None:
    found = [t for page in pages for t in page.tickets if t.external_id == ticket_id]
    return found[-1] if found else None


def containing(messages: list[Message], text: str) -> list[Message]:
    return [m for m in messages if text in m.body]


def only(messages: list[Message], text: str) -> Message:
    """The one message someone wrote with ``text``; automatic copies (an autoreply quoting the
    customer, the helpdesk's record of outgoing mail) may repeat it as SYSTEM messages."""
    found = [m for m in containing(messages, text) if m.role is not Role.SYSTEM]
    assert len(found) == 1, (
        f"expected exactly one non-system message with {text!r}, found {len(found)}: "
        f"{[(m.external_id, m.role.value, m.body[:80]) for m in messages]}"
    )
    return found[0]


def as_ticket(ticket_id: str) -> Ticket:
    """What the engine hands ``list_messages`` when it knows no more than the id."""
    return Ticket(external_id=ticket_id, status="", resolved=False)


class LogCapture(logging.Handler):
    """WARNING and above, from every logger, while the ``with`` block runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def __enter__(self) -> LogCapture:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)


def expect_error(kinds: tuple[type[Exception], ...], call: Callable[[], Any], what: str) -> None:
    try:
        result = call()
    except kinds:
        return
    raise AssertionError(f"{what}: expected {' or '.join(k.__name__ for k in kinds)}, "
                         f"got {result!r}")
