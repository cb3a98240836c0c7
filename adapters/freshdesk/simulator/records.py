"""The simulated Freshdesk's records and the small wire-format helpers every part of it uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape

from adapters.simulation import SimRequest, SimResponse

STATUSES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
CUSTOMER_LABELS = {2: "Being Processed", 3: "Awaiting your Reply",
                   4: "This ticket has been Resolved", 5: "This ticket has been Closed"}
SOURCES = (1, 2, 3, 7, 9, 10)  # email, portal, phone, chat, feedback widget, outbound email
REPLY, NOTE = 0, 2  # conversation source codes
NOMINAL_LIMIT = 400  # what X-RateLimit-Total says when no limit is enforced (Pro plan)
DEFAULT_WINDOW = timedelta(days=30)  # what the ticket list shows without updated_since
ACCESS_DENIED = {"code": "access_denied",
                 "message": "You are not authorized to perform this action."}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class _Contact:
    id: int
    name: str
    email: str | None
    agent: bool
    created_at: str


@dataclass
class _Conversation:
    id: int
    user_id: int
    html: str
    text: str
    incoming: bool
    private: bool
    source: int
    created_at: str


@dataclass
class _Ticket:
    id: int
    subject: str
    html: str
    text: str
    status: int
    source: int
    requester_id: int
    group_id: int | None
    product_id: int | None
    tags: list[str]
    created_at: str
    updated_at: str
    spam: bool = False
    deleted: bool = False
    conversations: list[_Conversation] = field(default_factory=list)


def _validation(name: str, message: str) -> SimResponse:
    return SimResponse(400, {"description": "Validation failed", "errors": [
        {"field": name, "message": message, "code": "invalid_value"},
    ]})


def _unauthenticated() -> SimResponse:
    return SimResponse(401, {"code": "invalid_credentials",
                             "message": "You have to be logged in to perform this action."})


def _markup(text: str) -> str:
    return "<div>{}</div>".format(escape(text).replace("\n", "<br>"))


def _parse_since(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _includes(request: SimRequest) -> set[str]:
    return {part for part in (request.arg("include") or "").split(",") if part}
