"""Intercom's conversation search as the simulator evaluates it: filters, day precision, paging.

Split from the simulator because the query language has rules of its own that a client can get
wrong, and each one is enforced here with the 400 Intercom would give:

- a query is one filter ``{field, operator, value}`` or ``{operator: AND|OR, value: [...]}``,
  nested at most two levels, at most 15 filters in one group;
- date fields (``created_at``, ``updated_at``) take only ``=``, ``<`` and ``>`` with a Unix
  time, and are matched by *calendar day* in the workspace's timezone: ``>`` starts at the next
  day, ``<`` ends before the value's day (Intercom documents this for contact search; the
  simulator applies it to conversations too, so a client that trusted the exact second misses
  changes here and fails its tests);
- ``pagination.per_page`` is 1 to 150 (default 20); ``starting_after`` must be a cursor this
  search handed out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from adapters.intercom.simulator.workspace import Conversation

MAX_PER_PAGE = 150
DEFAULT_PER_PAGE = 20
MAX_NESTING = 2
MAX_GROUP = 15
DAY = 86_400
DATE_FIELDS = frozenset({"created_at", "updated_at"})
TEXT_FIELDS = frozenset({"id", "state", "source.type"})
DATE_OPERATORS = frozenset({"=", "<", ">"})


class QueryError(ValueError):
    """A search request Intercom refuses with 400; the message is Intercom's kind of reason."""


Match = Callable[[Conversation], bool]


def compile_query(query: Any, utc_offset: int, depth: int = 1) -> Match:
    """The predicate a query stands for; raises QueryError for what Intercom refuses."""
    if not isinstance(query, dict):
        raise QueryError("query must be an object")
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        return _group(query, operator, utc_offset, depth)
    field = query.get("field")
    if field in DATE_FIELDS:
        return _date_filter(field, operator, query.get("value"), utc_offset)
    if field in TEXT_FIELDS:
        return _text_filter(field, operator, query.get("value"))
    raise QueryError(f"field {field!r} is not searchable here")


def _group(query: dict[str, Any], operator: str, utc_offset: int, depth: int) -> Match:
    if depth > MAX_NESTING:
        raise QueryError(f"a maximum of {MAX_NESTING} nested filters is allowed")
    items = query.get("value")
    if not isinstance(items, list) or not items or len(items) > MAX_GROUP:
        raise QueryError(f"an {operator} group needs 1 to {MAX_GROUP} filters")
    parts = [compile_query(item, utc_offset, depth + 1) for item in items]
    if operator == "AND":
        return lambda c: all(part(c) for part in parts)
    return lambda c: any(part(c) for part in parts)


def _date_filter(field: str, operator: Any, value: Any, utc_offset: int) -> Match:
    """Dates match by the workspace's calendar day, whatever second the value names."""
    if operator not in DATE_OPERATORS:
        raise QueryError(f"operator {operator!r} is not supported for date field {field}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryError(f"{field} needs a Unix timestamp")
    day_start = (value + utc_offset) // DAY * DAY - utc_offset
    if operator == ">":
        return lambda c: getattr(c, field) >= day_start + DAY
    if operator == "<":
        return lambda c: getattr(c, field) < day_start
    return lambda c: day_start <= getattr(c, field) < day_start + DAY


def _text_filter(field: str, operator: Any, value: Any) -> Match:
    def read(conversation: Conversation) -> str:
        return conversation.source_type if field == "source.type" else getattr(conversation,
                                                                               field)
    if operator == "=":
        return lambda c: read(c) == value
    if operator == "!=":
        return lambda c: read(c) != value
    if operator in ("IN", "NIN") and isinstance(value, list):
        return lambda c: (read(c) in value) is (operator == "IN")
    raise QueryError(f"operator {operator!r} is not supported for {field}")


def page_request(pagination: Any) -> tuple[int, int]:
    """``(per_page, id to start after)`` of a search's ``pagination`` (0: the first page)."""
    if pagination is None:
        return DEFAULT_PER_PAGE, 0
    if not isinstance(pagination, dict):
        raise QueryError("pagination must be an object")
    per_page = pagination.get("per_page", DEFAULT_PER_PAGE)
    if isinstance(per_page, bool) or not isinstance(per_page, int) or \
            not 1 <= per_page <= MAX_PER_PAGE:
        raise QueryError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    token = pagination.get("starting_after")
    return per_page, 0 if token is None else _read_cursor(token)


def cursor_after(conversation_id: str) -> str:
    """An opaque cursor in Intercom's style (base64 of a JSON array) naming the last id read."""
    return base64.b64encode(json.dumps([int(conversation_id)]).encode()).decode()


def _read_cursor(token: Any) -> int:
    try:
        value = json.loads(base64.b64decode(str(token), validate=True))
        after = value[0] if isinstance(value, list) and len(value) == 1 else None
    except (ValueError, TypeError):
        after = None
    if not isinstance(after, int):
        raise QueryError("starting_after is not a cursor this search handed out")
    return after
