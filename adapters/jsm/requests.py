"""Reading JSM's request view (``/rest/servicedeskapi/request/{id}``): the ticket, its filters'
ids, and the opening message, which JSM keeps as the request's ``description`` field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.base import Message, Role, Ticket, as_dict
from adapters.payload import numeric_id, parse_time, text_or_none
from adapters.text import body_text, clean_body
from connector.core.errors import MalformedResponse

REQUEST_PATH = "/rest/servicedeskapi/request"
DONE = "done"  # the status category of every resolved status, whatever the workflow calls it


def request_ticket(raw: dict[str, Any]) -> Ticket:
    """The ticket a request view describes; its id is Jira's numeric issue id."""
    issue_id = numeric_id(raw.get("issueId"))
    status = as_dict(raw.get("currentStatus"))
    if issue_id is None or not isinstance(status.get("statusCategory"), str):
        raise MalformedResponse("request without issueId or currentStatus.statusCategory")
    reporter = as_dict(raw.get("reporter"))
    links = as_dict(raw.get("_links"))
    return Ticket(
        external_id=issue_id,
        status=text_or_none(status.get("status")) or status["statusCategory"],
        resolved=status["statusCategory"].lower() == DONE,
        subject=text_or_none(field_value(raw, "summary")),
        requester_id=text_or_none(reporter.get("accountId")),
        requester_email=text_or_none(reporter.get("emailAddress")),
        url=text_or_none(links.get("agent")) or text_or_none(links.get("web")),
    )


def search_ticket(issue_id: str, fields: dict[str, Any], updated: datetime) -> Ticket:
    """The ticket a search result describes (Jira's platform view of the same issue)."""
    status = as_dict(fields.get("status"))
    category = as_dict(status.get("statusCategory")).get("key")
    if not isinstance(category, str):
        raise MalformedResponse(f"issue {issue_id} without status.statusCategory.key")
    return Ticket(
        external_id=issue_id,
        status=text_or_none(status.get("name")) or category,
        resolved=category.lower() == DONE,
        updated_at=updated,
        subject=text_or_none(fields.get("summary")),
        requester_id=text_or_none(as_dict(fields.get("reporter")).get("accountId")),
    )


def opening_message(raw: dict[str, Any], ticket_id: str) -> Message | None:
    """The request's description as the reporter's first message; None when it has none."""
    text = field_value(raw, "description")
    created = parse_time(as_dict(raw.get("createdDate")).get("iso8601"))
    if not isinstance(text, str) or not text.strip():
        return None
    if created is None:
        raise MalformedResponse(f"request {ticket_id} without createdDate")
    return Message(
        external_id=f"desc:{ticket_id}",
        ticket_id=ticket_id,
        created_at=created,
        role=Role.CUSTOMER,
        public=True,
        body=clean_body(text=text),
        author_id=text_or_none(as_dict(raw.get("reporter")).get("accountId")),
    )


def field_value(raw: dict[str, Any], field_id: str) -> Any:
    """The value of one of the request's fields (``summary``, ``description``)."""
    for item in raw.get("requestFieldValues") or []:
        entry = as_dict(item)
        if entry.get("fieldId") == field_id:
            return entry.get("value")
    return None


def comment_body(entry: dict[str, Any], role: Role) -> str:
    """A comment's text; a customer's loses quoted history and signature, which would
    otherwise become part of the question."""
    raw = entry.get("body")
    if not isinstance(raw, str):
        return ""
    return clean_body(text=raw) if role is Role.CUSTOMER else body_text(text=raw)
