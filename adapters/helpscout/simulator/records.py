"""The simulated Help Scout's records and the small wire-format helpers every part of it uses."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from adapters.simulation import SimResponse

NS = 1_000_000_000
STATUSES = ("active", "pending", "closed", "spam")
ROLES = ("owner", "admin", "user")
NOMINAL_LIMIT = 400  # what X-RateLimit-Limit-Minute says when no limit is enforced
MAX_REQUEST_BYTES = 100_000  # Help Scout's default request size limit (413 above it)
THREADS_PAGE_SIZE = 50
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_BURST = (12, 5.0)  # writes per seconds, account-wide


@dataclass
class _Person:
    id: int
    first: str
    last: str
    email: str | None
    kind: str  # "user", "system_user" (Help Scout AI) or "customer"
    role: str = "user"


@dataclass
class _Thread:
    id: int
    type: str  # customer, message, note, lineitem, chat, phone...
    state: str  # published, draft, hidden, review
    status: str  # the conversation status it set, or "nochange"
    body: str | None  # HTML; line items have none
    author: _Person
    customer_id: int
    created_at: str
    source_type: str = "web"
    action: dict[str, Any] | None = None
    api_user: int | None = None  # set when created over the API, by that user


@dataclass
class _Conversation:
    id: int
    number: int
    mailbox_id: int
    subject: str
    status: str
    type: str
    customer_id: int
    created_by: _Person
    created_at: str
    source_type: str
    tags: list[str] = field(default_factory=list)
    threads: list[_Thread] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)  # every modification, nanoseconds
    user_updated_at: str | None = None
    waiting_since: str | None = None
    closed_at: str | None = None
    closed_by: int = 0
    merged_into: int | None = None
    deleted: bool = False
    restricted: bool = False  # in a mailbox the API user may not see: 403, not listed
    corrupt: bool = False  # its first thread is served malformed (no id, body not a string)


def _iso(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _paragraphs(text: str) -> str:
    """Plain text as the HTML Help Scout stores for a mail body."""
    return "".join(
        "<p>{}</p>".format(escape(p).replace("\n", "<br>"))
        for p in re.split(r"\n\s*\n", text.strip()) if p
    )


def _too_many(wait: float) -> SimResponse:
    """Help Scout's 429: the wait in its own header, never in ``Retry-After``."""
    response = _vnd_error(429, "Rate limit exceeded")
    response.headers["X-RateLimit-Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _vnd_error(status: int, message: str, *errors: tuple[str, str]) -> SimResponse:
    """Help Scout's error body (Spring's VndError), with per-field errors when it has them."""
    body: dict[str, Any] = {"logRef": secrets.token_hex(8), "message": message}
    if errors:
        body["_embedded"] = {"errors": [
            {"path": path, "message": text, "source": "JSON"} for path, text in errors
        ]}
    return SimResponse(status, body)
