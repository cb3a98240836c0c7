"""What a backfill run is asked for and what it reports, and which ticket still waits.

The window comes from the command's options (ISO dates, datetimes or a time ago); the progress
and the result are what the command prints; ``waiting_message`` is the one rule that decides
whether a ticket's customer still waits for an answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time

from adapters.base import Message, Role, Ticket
from connector.core.durations import parse_duration
from connector.core.errors import BackfillError
from connector.engine.render import own_post
from connector.store.models import utcnow


@dataclass(frozen=True)
class Window:
    """Tickets whose latest change lies between ``since`` and ``until`` (None: the run's start)."""

    since: datetime
    until: datetime | None = None


def parse_when(
    text: str, *, option: str, end_of_day: bool = False, now: datetime | None = None
) -> datetime:
    """An ISO date or datetime as aware UTC (a datetime without offset is read as UTC), or a
    duration before ``now`` (``7d``, ``12h``).

    A bare date means the start of that day, or its end for ``--until``, so
    ``--since 2024-05-01 --until 2024-05-31`` covers all of May.
    """
    value = text.strip()
    if value and value[-1] in "smhd" and value[0].isdigit():
        try:
            return (now or utcnow()) - timedelta(seconds=parse_duration(value))
        except ValueError:
            pass
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.combine(day, day_time.max if end_of_day else day_time.min, UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BackfillError(
            f"{option}: {text!r} is not an ISO date or datetime, nor a time ago "
            "(e.g. 2024-05-01, 2024-05-01T08:00:00Z, 2024-05-01T10:00:00+02:00 or 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def make_window(since: str, until: str | None, now: datetime | None = None) -> Window:
    """The window from the command's options; a window that holds nothing is a usage error."""
    now = now or utcnow()
    start = parse_when(since, option="--since", now=now)
    end = parse_when(until, option="--until", end_of_day=True, now=now) if until else None
    if start >= now:
        raise BackfillError(f"--since: {since!r} is in the future")
    if end is not None and end <= start:
        raise BackfillError(f"--until: {until!r} is not after --since {since!r}")
    return Window(start, end)


@dataclass
class Progress:
    """Counts for the progress bar: every found ticket ends drafted, skipped or failed."""

    found: int = 0
    queued: int = 0  # queued by this run (what --limit counts)
    resumed: int = 0  # queued by an earlier run, followed by this one
    drafted: int = 0
    skipped: int = 0
    failed: int = 0
    listing: bool = True

    @property
    def finished(self) -> int:
        return self.drafted + self.skipped + self.failed


@dataclass
class BackfillResult:
    progress: Progress
    reasons: Counter[str] = field(default_factory=Counter)  # why tickets were skipped or failed
    would_queue: list[Ticket] = field(default_factory=list)  # the dry run's answer
    interrupted: bool = False
    stalled: bool = False  # turns were still in flight when waiting for them made no sense
    unfinished: str | None = None  # why the listing could not be walked to its end
    fatal: str | None = None  # Uppzy or the helpdesk refused our credentials


ProgressListener = Callable[[Progress], None]


def waiting_message(messages: list[Message], posted_ids: set[str]) -> tuple[Message | None, str]:
    """The customer's message that still waits for an answer, or why there is none.

    It is the latest public message by anyone but the system, written by the customer, with no
    post of ours after it (ours are recognised by marker or posted id, public or not).
    """
    latest: int | None = None
    for index, message in enumerate(messages):
        if message.public and message.role != Role.SYSTEM and not own_post(message, posted_ids):
            latest = index
    if latest is None:
        return None, "no public customer message"
    if messages[latest].role != Role.CUSTOMER:
        return None, "answered by an agent"
    if any(own_post(m, posted_ids) for m in messages[latest + 1:]):
        return None, "already drafted"
    return messages[latest], ""
