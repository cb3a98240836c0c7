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


_PREFIXED = re.compile(r"[a-z]{2,8}_[0-9a-z]{1,40}")


def prefixed_id(value: Any, prefix: str | None = None) -> str | None:
    """A vendor id made of a type prefix and a token (Front's ``cnv_55c8c149``), or None for
    anything else; with ``prefix``, only ids of that type (``"cnv"``) are accepted."""
    if not isinstance(value, str) or not _PREFIXED.fullmatch(value):
        return None
    return value if prefix is None or value.startswith(prefix + "_") else None


def path_id(value: str, prefix: str) -> str:
    """A prefixed id fit for a URL path; anything else names no object of that type (and
    could not be put in a path safely), so it is NotFound like an unknown id."""
    found = prefixed_id(value, prefix)
    if found is None:
        raise NotFound(f"{value!r} is not a {prefix}_ id of this helpdesk")
    return found


def unix_time(value: Any) -> datetime | None:
    """A UNIX timestamp in seconds (a fraction allowed) as aware UTC; None when missing,
    negative or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
