"""Zendesk Support: the incremental cursor export for changes, private comments as notes.

Zendesk has no draft API, so our answer goes in as a private comment (``public: false``) that an
agent copies or turns into a reply. Changes come from the cursor-based incremental ticket export:
one ``start_time`` request ever, then ``cursor`` only, because restarting from a time skips or
repeats tickets. Comments are not in the export, so the engine reads them per changed ticket;
the export's ``comment_count`` side-load lets it skip a ticket whose count it already knows.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from adapters import webhooks
from adapters.base import (
    Adapter,
    AdapterSettings,
    BearerTokenAuth,
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
    union_by_key,
)
from adapters.payload import json_object, numeric_id, parse_time, path_number
from adapters.text import body_text, clean_body
from connector.errors import AuthenticationFailed, MalformedResponse, NotFound, PermissionDenied
from connector.http import CallObserver
from connector.redact import register_secret

log = logging.getLogger(__name__)

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
RESOLVED_STATUSES = frozenset({"solved", "closed", "deleted"})
SYSTEM_SOURCES = frozenset({"trigger", "automation"})
AGENT_ROLES = frozenset({"agent", "admin"})
EXPORT_EXCLUSION = 60.0  # Zendesk leaves the newest minute out of the export (and refuses it)
CLOCK_SKEW = 10.0  # our clock may run ahead of Zendesk's; a few seconds earlier costs nothing
COMMENTS_PAGE_MAX = 100
MAX_BACKFILL_PAGES = 10_000  # a bound for the loop, far beyond any account's export
MAX_COMMENT_PAGES = 60  # Zendesk caps a ticket at 5000 comments: 50 full pages
START_PREFIX = "start_time:"  # our own cursor form until Zendesk has handed out a real one


class ZendeskTokenAuth(BaseModel):
    """API token of an agent: Basic ``{email}/token:{api_token}`` (tokens retire 2027-04-30)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3)
    api_token: SecretStr = Field(min_length=1)


ZendeskAuth = union_by_key("access_token", BearerTokenAuth, ZendeskTokenAuth)


class ZendeskSettings(AdapterSettings):
    """One Zendesk account. ``url`` is the account root, e.g. ``https://acme.zendesk.com``.

    The filters narrow which tickets the engine sees; a ticket must match every filter that is
    set (``tags``: at least one of the listed tags).
    """

    type: Literal["zendesk"]
    auth: ZendeskAuth
    group_ids: list[int] = Field(default_factory=list)
    brand_ids: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    page_size: int = Field(
        default=1000, ge=1, le=1000,
        description="Tickets per export page; comment pages use at most 100 (Zendesk's cap).",
    )

    @field_validator("url")
    @classmethod
    def _account_root(cls, value: str) -> str:
        """Accept the API base people copy from Zendesk's docs; we add ``/api/v2`` ourselves."""
        return value.removesuffix("/api/v2")


class ZendeskAdapter(Adapter):
    """Zendesk Support over its REST API v2."""

    type_name = "zendesk"
    capabilities = Capabilities(drafts=False, webhook="zendesk-hmac-sha256")
    settings_model = ZendeskSettings
    simulator = "adapters.zendesk.simulator:ZendeskSimulator"

    settings: ZendeskSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self.authorization = _authorization(self.settings.auth)
        self._custom_categories: dict[int, str] | None = None

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; Zendesk answers an unaccepted login as the anonymous user, not a 401."""
        resp = self.http.request("GET", "/api/v2/users/me.json", endpoint="users_me")
        user = as_dict(json_object(resp.data, "users_me").get("user"))
        user_id = numeric_id(user.get("id"))
        if user_id is None:
            raise AuthenticationFailed(
                f"{self.name} users_me: Zendesk did not accept the credentials (anonymous user)",
                status=resp.status, endpoint="users_me",
            )
        role = user.get("role")
        if role not in AGENT_ROLES:
            raise PermissionDenied(
                f"{self.name} users_me: user {user_id} is {role!r}; internal notes need an agent",
                status=resp.status, endpoint="users_me",
            )
        return f"{role} {user_id} ({user.get('name') or 'unnamed'})"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One export page, resumed from ``cursor`` or, the very first time, from ``start_from``.

        Until Zendesk hands out an ``after_cursor`` the cursor we return is ``start_time:<unix>``:
        a first answer without one then repeats the first request instead of restarting from a
        later time and losing what happened in between.
        """
        # ``comment_count`` lets the engine skip re-reading a ticket that only our note changed.
        params: dict[str, Any] = {
            "per_page": self.settings.page_size, "include": "users,comment_count",
        }
        if cursor and not cursor.startswith(START_PREFIX):
            params["cursor"] = cursor
        else:
            start = int(cursor.removeprefix(START_PREFIX)) if cursor else _start_time(start_from)
            params["start_time"] = start
            cursor = f"{START_PREFIX}{start}"
        resp = self.http.request("GET", EXPORT_PATH, endpoint="incremental_tickets", params=params)
        body = json_object(resp.data, "incremental_tickets")
        items = body.get("tickets")
        if not isinstance(items, list):
            raise MalformedResponse(
                f"{self.name} incremental_tickets: no tickets list", endpoint="incremental_tickets"
            )
        emails = _user_emails(body.get("users"))
        tickets = [
            ticket for index, item in enumerate(items)
            if (ticket := self._export_item(index, item, emails)) is not None
        ]
        after = body.get("after_cursor")
        next_cursor = after if isinstance(after, str) and after else cursor
        # Without progress another page would be the same page: stop rather than spin.
        more = body.get("end_of_stream") is False and next_cursor != cursor
        return ChangePage(tickets, next_cursor, more)

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = path_number(ticket_id)
        resp = self.http.request(
            "GET", f"/api/v2/tickets/{number}.json", endpoint="ticket_show",
            params={"include": "users"},
        )
        body = json_object(resp.data, "ticket_show")
        return self._ticket(body.get("ticket"), _user_emails(body.get("users")))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        comments, roles = self._comment_pages(path_number(ticket.external_id))
        messages = [
            message for comment in comments
            if (message := self._message(comment, ticket, roles)) is not None
        ]
        # Zendesk sends oldest first already; a stable sort keeps its order for equal times.
        return sorted(messages, key=lambda m: m.created_at)

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """Add a private comment; ``public`` is explicit because Zendesk's default is public."""
        number = path_number(ticket_id)
        resp = self.http.request(
            "PUT", f"/api/v2/tickets/{number}.json", endpoint="ticket_update",
            json_body={"ticket": {"comment": {"body": text, "public": False}}},
            idempotent=False,
        )
        audit = as_dict(as_dict(resp.data).get("audit"))
        events = audit.get("events")
        for item in events if isinstance(events, list) else []:
            event = as_dict(item)
            comment_id = numeric_id(event.get("id"))
            if event.get("type") == "Comment" and comment_id is not None:
                return Posted(comment_id, "note")
        audit_id = numeric_id(audit.get("id"))
        if audit_id is not None:
            return Posted(f"audit:{audit_id}", "note")
        raise MalformedResponse(
            f"{self.name} ticket_update: ticket {number} updated but no comment or audit id "
            "in the answer", status=resp.status, endpoint="ticket_update",
        )

    # ----- helpers ---------------------------------------------------------------------------
    def _export_item(self, index: int, item: Any, emails: dict[str, str]) -> Ticket | None:
        """One export entry, or None when it is filtered out or unusable (the page goes on)."""
        raw = as_dict(item)
        try:
            ticket = self._ticket(raw, emails)
        except MalformedResponse:
            log.warning("%s: skipped export item %d: not a ticket with an id", self.name, index)
            return None
        return ticket if self._wanted(raw) else None

    def _wanted(self, raw: dict[str, Any]) -> bool:
        settings = self.settings
        if settings.group_ids and raw.get("group_id") not in settings.group_ids:
            return False
        if settings.brand_ids and raw.get("brand_id") not in settings.brand_ids:
            return False
        tags = raw.get("tags")
        return not settings.tags or (
            isinstance(tags, list) and any(tag in tags for tag in settings.tags)
        )

    def _ticket(self, raw: Any, emails: dict[str, str]) -> Ticket:
        raw = as_dict(raw)
        ticket_id = numeric_id(raw.get("id"))
        if ticket_id is None:
            raise MalformedResponse(f"{self.name}: ticket without an id")
        status = raw.get("status") if isinstance(raw.get("status"), str) else "unknown"
        requester_id = numeric_id(raw.get("requester_id"))
        tags = raw.get("tags")
        channel = as_dict(raw.get("via")).get("channel")
        count = raw.get("comment_count")
        return Ticket(
            external_id=ticket_id,
            status=status,
            resolved=self._resolved(status, raw.get("custom_status_id")),
            updated_at=parse_time(raw.get("updated_at")),
            subject=raw.get("subject") if isinstance(raw.get("subject"), str) else None,
            requester_id=requester_id,
            requester_email=emails.get(requester_id) if requester_id else None,
            channel=channel if isinstance(channel, str) else None,
            tags=frozenset(t for t in tags if isinstance(t, str))
            if isinstance(tags, list) else frozenset(),
            url=f"{self.settings.url}/agent/tickets/{ticket_id}",
            message_count=count if isinstance(count, int) and not isinstance(count, bool)
            and count >= 0 else None,
        )

    def _resolved(self, status: str, custom_status_id: Any) -> bool:
        if status in RESOLVED_STATUSES:
            return True
        if not isinstance(custom_status_id, int) or isinstance(custom_status_id, bool):
            return False
        return self._status_categories().get(custom_status_id) == "solved"

    def _status_categories(self) -> dict[int, str]:
        """Custom status id -> category, loaded once; accounts without custom statuses get {}."""
        if self._custom_categories is None:
            try:
                resp = self.http.request(
                    "GET", "/api/v2/custom_statuses.json", endpoint="custom_statuses"
                )
            except (NotFound, PermissionDenied):
                self._custom_categories = {}
            else:
                statuses = as_dict(resp.data).get("custom_statuses")
                self._custom_categories = {
                    status["id"]: str(status.get("status_category"))
                    for status in (statuses if isinstance(statuses, list) else [])
                    if isinstance(status, dict) and isinstance(status.get("id"), int)
                }
        return self._custom_categories

    def _comment_pages(self, number: str) -> tuple[list[Any], dict[str, str]]:
        """Every comment of a ticket and the side-loaded author roles, following the cursor."""
        path = f"/api/v2/tickets/{number}/comments.json"
        params: dict[str, Any] = {
            "page[size]": min(self.settings.page_size, COMMENTS_PAGE_MAX), "include": "users",
        }
        comments: list[Any] = []
        roles: dict[str, str] = {}
        seen: set[str] = set()
        for _ in range(MAX_COMMENT_PAGES):
            resp = self.http.request("GET", path, endpoint="ticket_comments", params=params)
            body = json_object(resp.data, "ticket_comments")
            page = body.get("comments")
            if not isinstance(page, list):
                raise MalformedResponse(
                    f"{self.name} ticket_comments: no comments list", endpoint="ticket_comments"
                )
            comments.extend(page)
            roles.update(_user_roles(body.get("users")))
            after = _next_page_cursor(body)
            if after is None:
                return comments, roles
            if after in seen:
                raise MalformedResponse(
                    f"{self.name} ticket_comments: cursor repeats on ticket {number}",
                    endpoint="ticket_comments",
                )
            seen.add(after)
            params = {**params, "page[after]": after}
        raise MalformedResponse(
            f"{self.name} ticket_comments: ticket {number} has more than {MAX_COMMENT_PAGES} "
            "pages of comments", endpoint="ticket_comments",
        )

    def _message(self, item: Any, ticket: Ticket, roles: dict[str, str]) -> Message | None:
        comment = as_dict(item)
        comment_id = numeric_id(comment.get("id"))
        created_at = parse_time(comment.get("created_at"))
        if comment_id is None or created_at is None:
            log.warning(
                "%s: skipped a comment on ticket %s without id or time", self.name,
                ticket.external_id,
            )
            return None
        author_id = numeric_id(comment.get("author_id"))
        role = _role(
            comment, roles.get(author_id or ""),
            by_requester=author_id is not None and author_id == ticket.requester_id,
        )
        return Message(
            external_id=comment_id,
            ticket_id=ticket.external_id,
            created_at=created_at,
            role=role,
            public=comment.get("public") is True,
            body=_body(comment, role),
            author_id=author_id,
        )

    # ----- backfill --------------------------------------------------------------------------
    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """The export again, from ``since``, with a cursor that lives only in this generator.

        The export is ordered by change time and lists each ticket once, at its latest change,
        so the listing ends at the first ticket changed after ``until``: the window is about a
        ticket's latest change.
        """
        cursor: str | None = None
        for _ in range(MAX_BACKFILL_PAGES):
            page = self.poll_changes(cursor, since)
            inside = list(takewhile(
                lambda t: until is None or t.updated_at is None or t.updated_at <= until,
                page.tickets,
            ))
            yield inside
            if len(inside) < len(page.tickets) or not page.more:
                return
            cursor = page.cursor
        log.warning("%s: backfill listing stopped after %d pages", self.name, MAX_BACKFILL_PAGES)

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-zendesk-webhook-invocation-id") or None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Event webhooks carry ``detail.id`` (events of other domains name no ticket); a
        trigger or automation webhook sends the body the admin wrote, which must be
        ``{"ticket_id": "{{ticket.id}}"}``."""
        data = webhooks.json_object(body)
        event = data.get("type")
        if isinstance(event, str) and event.startswith("zen:event-type:"):
            if not event.startswith("zen:event-type:ticket."):
                return []
            return [webhooks.ticket_id(as_dict(data.get("detail")).get("id"), "detail.id")]
        return [webhooks.ticket_id(data.get("ticket_id"), "ticket_id")]


def _authorization(auth: ZendeskTokenAuth | BearerTokenAuth) -> str:
    """The Authorization header; every form of the secret is registered so logs mask it."""
    if isinstance(auth, BearerTokenAuth):
        token = auth.access_token.get_secret_value()
        register_secret(token)
        return f"Bearer {token}"
    token = auth.api_token.get_secret_value()
    encoded = base64.b64encode(f"{auth.email}/token:{token}".encode()).decode()
    register_secret(token)
    register_secret(encoded)
    return f"Basic {encoded}"


def _start_time(start_from: datetime) -> int:
    """The first export's start: never in the newest minute Zendesk refuses, never negative."""
    when = start_from if start_from.tzinfo else start_from.replace(tzinfo=UTC)
    latest = time.time() - EXPORT_EXCLUSION - CLOCK_SKEW
    return max(0, int(min(when.timestamp(), latest)))










def _side_loaded(users: Any) -> list[dict[str, Any]]:
    return [user for user in users if isinstance(user, dict)] if isinstance(users, list) else []


def _user_emails(users: Any) -> dict[str, str]:
    return {
        user_id: user["email"] for user in _side_loaded(users)
        if (user_id := numeric_id(user.get("id"))) and isinstance(user.get("email"), str)
    }


def _user_roles(users: Any) -> dict[str, str]:
    return {
        user_id: user["role"] for user in _side_loaded(users)
        if (user_id := numeric_id(user.get("id"))) and isinstance(user.get("role"), str)
    }


def _next_page_cursor(body: dict[str, Any]) -> str | None:
    """The ``page[after]`` value of the next page, or None on the last page."""
    meta = as_dict(body.get("meta"))
    if meta.get("has_more") is not True:
        return None
    after = meta.get("after_cursor")
    if isinstance(after, str) and after:
        return after
    # Only the cursor is taken from links.next: the host stays ours, so credentials do too.
    link = as_dict(body.get("links")).get("next")
    values = parse_qs(urlsplit(link).query).get("page[after]") if isinstance(link, str) else None
    if not values:
        raise MalformedResponse("ticket_comments: has_more without a cursor",
                                endpoint="ticket_comments")
    return values[0]


def _role(comment: dict[str, Any], author_role: str | None, *, by_requester: bool) -> Role:
    via = as_dict(comment.get("via"))
    if via.get("channel") == "rule" or as_dict(via.get("source")).get("rel") in SYSTEM_SOURCES:
        return Role.SYSTEM
    if author_role == "end-user":
        return Role.CUSTOMER
    if author_role in AGENT_ROLES:
        return Role.AGENT
    # Author not side-loaded (e.g. permanently deleted): only the requester counts as customer.
    return Role.CUSTOMER if by_requester else Role.AGENT


def _body(comment: dict[str, Any], role: Role) -> str:
    """Plain text; a customer's without the quoted history and signature mail replies carry."""
    text = next(
        (value for key in ("plain_body", "body") if isinstance(value := comment.get(key), str)
         and value.strip()), None,
    )
    html = comment.get("html_body")
    html = html if isinstance(html, str) else None
    return clean_body(text, html) if role is Role.CUSTOMER else body_text(text, html)
