"""Times as the adapters send and keep them: always aware UTC, written the way a vendor reads them.

A naive time reaching an adapter (``start_from`` from a test, a backfill window typed by a
person) means UTC; taking it as local time would move a poll by the host's offset. Vendors read
times at one resolution or another, so the text forms say theirs: whole seconds for most,
milliseconds where a search index keeps them.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime


def utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive time already is."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def whole_second(when: datetime) -> datetime:
    """``when`` rounded down to its second, for vendors whose filters have no finer resolution:
    rounding down reads a change twice rather than never."""
    return utc(when).replace(microsecond=0)


def iso_seconds(when: datetime) -> str:
    """``2024-03-01T09:00:00Z``: the form every vendor accepts in a query."""
    return utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(when: datetime) -> str:
    """``2024-03-01T09:00:00.123Z``: the precision Zammad and Elasticsearch keep."""
    when = utc(when)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def server_time(headers: Mapping[str, str]) -> datetime:
    """When the vendor answered, by its ``Date`` header; our clock when it sent none.

    A feed that re-reads "everything since the last poll" must measure that from the server's
    clock: ours may run ahead, and a change stamped by the server in between would be skipped.
    """
    try:
        when = email.utils.parsedate_to_datetime(headers.get("Date") or "")
    except (TypeError, ValueError):
        return datetime.now(UTC)
    return utc(when)
