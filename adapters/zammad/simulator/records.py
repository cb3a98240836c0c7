"""The simulated Zammad's records and the small wire-format helpers every part of it uses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.simulation import SimRequest, SimResponse

STATE_TYPES = {
    1: "new", 2: "open", 3: "pending reminder", 4: "pending action", 5: "closed", 6: "merged",
    7: "removed",
}
DEFAULT_STATES = (  # (name, state type id, active), as Zammad seeds them
    ("new", 1, True), ("open", 2, True), ("pending reminder", 3, True), ("closed", 5, True),
    ("merged", 6, True), ("removed", 7, False), ("pending close", 4, True),
)
SENDERS = {"Agent": 1, "Customer": 2, "System": 3}
ARTICLE_TYPES = {"email": 1, "sms": 2, "chat": 3, "fax": 4, "phone": 5, "note": 10, "web": 11}
ROLES = ("customer", "agent", "admin")
SEARCH_MAX_PER_PAGE = 200
SEARCH_DEFAULT_PER_PAGE = 50
SEARCH_WINDOW = 10_000  # Elasticsearch's max result window (from + size)
SYSTEM_USER_ID = 1


@dataclass
class _User:
    id: int
    login: str
    firstname: str
    lastname: str
    email: str
    roles: list[str]
    created_at: str
    denied_groups: set[int] = field(default_factory=set)


@dataclass
class _Group:
    id: int
    name: str
    shared_drafts: bool
    created_at: str


@dataclass
class _State:
    id: int
    name: str
    state_type_id: int
    active: bool
    created_at: str


@dataclass
class _Article:
    id: int
    ticket_id: int
    sender: str
    type: str
    internal: bool
    body: str
    content_type: str
    from_: str
    subject: str
    created_by_id: int
    origin_by_id: int | None
    created_at: str


@dataclass
class _Draft:
    id: int
    new_article: dict[str, Any]
    ticket_attributes: dict[str, Any]
    created_by_id: int
    updated_by_id: int
    created_at: str
    updated_at: str


@dataclass
class _Ticket:
    id: int
    number: str
    title: str
    group_id: int
    state_id: int
    customer_id: int
    create_article_type: str
    created_by_id: int
    created_at: str
    updated_at: str = ""
    updated_by_id: int = SYSTEM_USER_ID
    tags: list[str] = field(default_factory=list)
    articles: list[_Article] = field(default_factory=list)
    draft: _Draft | None = None
    corrupt: bool = False


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


def _parse_time(value: str) -> datetime | None:
    """A time as Elasticsearch's default date format reads it (date, or date and time)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _error(status: int, message: str) -> SimResponse:
    return SimResponse(status, {"error": message, "error_human": message})


OAUTH_LIFETIME = 7200.0  # Doorkeeper's default access-token lifetime, kept by Zammad


def _expand(request: SimRequest) -> bool:
    return (request.arg("expand") or "").lower() == "true"


def _int_arg(request: SimRequest, names: tuple[str, ...], default: int) -> int:
    """The first of ``names`` given, read like Ruby's ``to_i`` (junk is 0)."""
    for name in names:
        value = request.arg(name)
        if value is not None:
            digits = re.match(r"\s*(-?\d+)", value)
            return int(digits.group(1)) if digits else 0
    return default
