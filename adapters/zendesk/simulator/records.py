"""The simulated Zendesk's records and the small wire-format helpers every part of it uses."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.simulation import SimResponse

NS = 1_000_000_000
ROLES = ("end-user", "agent", "admin")
SUPPORT_TYPES = ("agent", "ai_agent")  # who handles a ticket; the export lists "agent" by default
EXPORT_LIMIT = 10  # requests a minute to the incremental exports, Zendesk's documented limit
DEFAULT_TOKEN_TTL = 1800.0  # OAuth clients created after 2026-04-30: 30-minute access tokens
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
CATEGORIES = ("new", "open", "pending", "hold", "solved")
NOMINAL_LIMIT = 700  # what X-Rate-Limit says when no limit is enforced (Enterprise plan)
_NO_SYSTEM_SOURCE: dict[str, Any] = {"from": {}, "to": {}, "rel": None}


@dataclass
class _User:
    id: int
    name: str
    email: str | None
    role: str
    created_at: str


@dataclass
class _OAuthClient:
    identifier: str
    secret: str
    user_id: int  # whom a client-credentials token acts as (the admin who made the client)
    revoked: bool = False


@dataclass
class _AccessToken:
    user_id: int
    expires_at: float  # monotonic; math.inf for tokens that never expire
    client: str | None = None
    refresh: str | None = None  # the refresh token issued with it; using that one ends it


@dataclass
class _Comment:
    id: int
    author_id: int
    text: str
    markup: str
    public: bool
    via: dict[str, Any]
    created_at: str
    audit_id: int
    html_only: bool  # served with html_body alone, as some channels deliver comments


@dataclass
class _Ticket:
    id: int
    subject: str
    status: str
    custom_status_id: int | None
    requester_id: int
    group_id: int | None
    brand_id: int | None
    tags: list[str]
    via: dict[str, Any]
    created_at: str
    support_type: str = "agent"
    updated_at: str = ""
    stamp: int = 0  # nanoseconds of the last change: the export's order and cursor position
    comments: list[_Comment] = field(default_factory=list)


def _iso(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(*parts: int) -> str:
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode()


def _decode(cursor: str, count: int) -> tuple[int, ...] | None:
    try:
        parts = tuple(int(p) for p in base64.urlsafe_b64decode(cursor).decode().split("|"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return parts if len(parts) == count else None


def _error(status: int, error: str, description: str) -> SimResponse:
    return SimResponse(status, {"error": error, "description": description})


def _oauth_error(status: int, error: str, description: str) -> SimResponse:
    return SimResponse(status, {"error": error, "error_description": description})


def _unauthenticated() -> SimResponse:
    return _error(401, "Couldn't authenticate you", "Couldn't authenticate you")


def _via(channel: str, rel: str | None = None) -> dict[str, Any]:
    return {"channel": channel, "source": {**_NO_SYSTEM_SOURCE, "rel": rel}}
