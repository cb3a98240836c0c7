"""Reading vendor JSON defensively: ids, objects and times, the same way in every adapter.

Vendors send ids as numbers in one place and strings in another, leave fields out, and put
time zones (or none) on timestamps. A value that does not fit is treated as missing, so the one
item fails and the rest of the page goes on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from connector.core.errors import MalformedResponse, NotFound

_DIGITS = re.compile(r"[0-9]+")


def json_object(data: Any, endpoint: str) -> dict[str, Any]:
    """The answer as a JSON object, or MalformedResponse naming the endpoint."""
    if not isinstance(data, dict):
        raise MalformedResponse(f"{endpoint}: answer is not a JSON object", endpoint=endpoint)
    return data


def numeric_id(value: Any) -> str | None:
    """A numeric vendor id as our text id; None for missing, negative or non-numeric values."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return value.strip()
    return None


def record_id(record: dict[str, Any], what: str) -> str:
    """The numeric ``id`` of a record that is nothing without one (a ticket): MalformedResponse
    naming ``what`` otherwise, which the caller turns into skipping that record alone."""
    found = numeric_id(record.get("id"))
    if found is None:
        raise MalformedResponse(f"{what} without an id")
    return found


def path_number(ticket_id: str) -> str:
    """A ticket id fit for a URL path; anything but digits would build a different URL, so no
    such ticket can exist (and no path can be injected)."""
    if not _DIGITS.fullmatch(ticket_id):
        raise NotFound(f"{ticket_id!r} is not a ticket id of this helpdesk")
    return ticket_id


def text_or_none(value: Any) -> str | None:
    """A text field, or None when the vendor left it out or sent something else."""
    return value if isinstance(value, str) else None


def text_set(value: Any) -> frozenset[str]:
    """A list of names (tags), keeping only the strings; empty when it is no list."""
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) \
        else frozenset()


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as aware UTC; None when missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def unix_time(value: Any) -> datetime | None:
    """Unix seconds (Intercom writes every time so) as aware UTC; None when missing, not a
    number, or out of any plausible range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
