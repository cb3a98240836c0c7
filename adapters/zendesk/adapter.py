"""Zendesk Support: the incremental cursor export for changes, private comments as notes.

Zendesk has no draft API, so our answer goes in as a private comment (``public: false``) that an
agent copies or turns into a reply. Changes come from the cursor-based incremental ticket export:
one ``start_time`` request ever, then ``cursor`` only, because restarting from a time skips or
repeats tickets. Comments are not in the export, so the engine reads them per changed ticket;
the export's ``comment_count`` side-load lets it skip a ticket whose count it already knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from itertools import chain
from typing import Any, Literal

from pydantic import Field, SecretStr

from adapters import signatures
from adapters.auth import (
    BearerTokenAuth,
    Credentials,
    OAuthGrant,
    StaticCredentials,
    basic_authorization,
    union_by_keys,
)
from adapters.base import (
    AdapterSettings,
    Capabilities,
    ChangePage,
    FilteredSettings,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
)
from adapters.paging import follow_pages, link_query
from adapters.payload import (
    json_object,
    numeric_id,
    parse_time,
    path_number,
    record_id,
    text_or_none,
    text_set,
)
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.text import body_text, clean_body, text_to_html
from adapters.times import utc
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
)
from connector.core.http import CallObserver

log = logging.getLogger(__name__)

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
RESOLVED_STATUSES = frozenset({"solved", "closed", "deleted"})
SYSTEM_SOURCES = frozenset({"trigger", "automation"})
AGENT_ROLES = frozenset({"agent", "admin"})
EXPORT_EXCLUSION = 60.0  # Zendesk leaves the newest minute out of the export (and refuses it)
CLOCK_SKEW = 10.0  # our clock may run ahead of Zendesk's; a few seconds earlier costs nothing
COMMENTS_PAGE_MAX = 100
MAX_COMMENT_PAGES = 60  # Zendesk caps a ticket at 5000 comments: 50 full pages
START_PREFIX = "start_time:"  # our own cursor form until Zendesk has handed out a real one
TOKEN_PATH = "/oauth/tokens"  # Create Token for Grant Type (JSON body)
DEFAULT_TOKEN_LIFETIME = 1800.0  # Zendesk's default access-token TTL, when no expires_in is sent
ADMIN_NEEDED = "the incremental export is allowed for admins only: the user must be an admin"


class ZendeskTokenAuth(StaticCredentials):
    """API token of an admin: Basic ``{email}/token:{api_token}`` (tokens retire 2027-04-30)."""

    email: str = Field(min_length=3)
    api_token: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return basic_authorization(f"{self.email}/token", self.api_token)


class ZendeskClientCredentials(Credentials):
    """A confidential OAuth client (Admin Center > Apps and integrations > APIs > OAuth
    clients); its client-credentials tokens act as the admin who created it."""

    client_id: str = Field(min_length=1, description="The client's unique identifier.")
    client_secret: SecretStr = Field(min_length=1)
    scope: str = Field(default="read write", min_length=1)


class ZendeskRefreshAuth(Credentials):
    """The refresh token an authorization-code flow gave this client. Zendesk replaces it on
    every use; the newest is kept in the database and wins over this one after a restart."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)
    scope: str | None = Field(default=None, min_length=1)


ZendeskAuth = union_by_keys(
    [("refresh_token", ZendeskRefreshAuth), ("client_id", ZendeskClientCredentials),
     ("access_token", BearerTokenAuth)],
    ZendeskTokenAuth,
)


class ZendeskSettings(FilteredSettings):
    """One Zendesk account. ``url`` is the account root, e.g. ``https://acme.zendesk.com``."""

    api_suffix = "/api/v2"
    type: Literal["zendesk"]
    auth: ZendeskAuth
    brand_ids: list[int] = Field(default_factory=list)
    page_size: int = Field(
        default=1000, ge=1, le=1000,
        description="Tickets per export page; comment pages use at most 100 (Zendesk's cap).",
    )
    support_type_scope: Literal["all", "agent", "ai_agent"] = Field(
        default="all",
        description="Which tickets the export lists: Zendesk's own default, agent, leaves out "
        "tickets its AI agents handle.",
    )


class ZendeskAdapter(ReplayAdapter):
    """Zendesk Support over its REST API v2.

    Backfill replays the export, which lists each ticket once, at its latest change.
    """

    type_name = "zendesk"
    capabilities = Capabilities(drafts=False, webhook="zendesk-hmac-sha256")
    settings_model = ZendeskSettings
    simulator = "adapters.zendesk.simulator:ZendeskSimulator"
    # The incremental exports have a limit of their own: its 429 must not stop posts and reads.
    rate_families = {"incremental_tickets": "incremental_export"}
    feed_order = FeedOrder.LATEST_CHANGE

    settings: ZendeskSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        auth = self.settings.auth
        if isinstance(auth, ZendeskClientCredentials | ZendeskRefreshAuth):
            refresh = auth.refresh_token.get_secret_value() \
                if isinstance(auth, ZendeskRefreshAuth) else None
            self.use_oauth(OAuthGrant(
                TOKEN_PATH, auth.client_id, auth.client_secret.get_secret_value(),
                scope=auth.scope, refresh_token=refresh, default_lifetime=DEFAULT_TOKEN_LIFETIME,
            ), "Zendesk")
        if isinstance(auth, ZendeskTokenAuth):
            log.warning("%s: %s.auth is a Zendesk API token; Zendesk deactivates every API token "
                        "on 2027-04-30 (and any unused for 30 days): switch to an OAuth client "
                        "(client_id, client_secret)", self.name, self.settings.key_path)
        self._custom_categories: dict[int, str] | None = None

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; Zendesk answers an unaccepted login as the anonymous user, not a 401.
        Only an admin may read the incremental export, so anyone else fails here rather than
        on every poll."""
        resp = self.http.request("GET", "/api/v2/users/me.json", endpoint="users_me")
        user = as_dict(json_object(resp.data, "users_me").get("user"))
        user_id = numeric_id(user.get("id"))
        if user_id is None:
            raise AuthenticationFailed(
                f"{self.name} users_me: Zendesk did not accept the credentials (anonymous user)",
                status=resp.status, endpoint="users_me",
            )
        role = user.get("role")
        if role != "admin":
            raise PermissionDenied(
                f"{self.name} users_me: user {user_id} is {role!r}; {ADMIN_NEEDED} "
                f"(the user of {self.settings.key_path}.auth)",
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
            "support_type_scope": self.settings.support_type_scope,
        }
        if cursor and not cursor.startswith(START_PREFIX):
            params["cursor"] = cursor
        else:
            start = int(cursor.removeprefix(START_PREFIX)) if cursor else _start_time(start_from)
            params["start_time"] = start
            cursor = f"{START_PREFIX}{start}"
        try:
            resp = self.http.request("GET", EXPORT_PATH, endpoint="incremental_tickets",
                                     params=params)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"{self.name} incremental_tickets: {ADMIN_NEEDED} (the user of "
                f"{self.settings.key_path}.auth)",
                status=exc.status, detail=exc.detail, endpoint="incremental_tickets",
            ) from None
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
        messages = self.read_entries(
            comments, f"a comment on ticket {ticket.external_id}",
            lambda comment, comment_id, at: self._message(comment, comment_id, at, ticket, roles),
        )
        # Zendesk sends oldest first already; a stable sort keeps its order for equal times.
        return sorted(messages, key=lambda m: m.created_at)

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """Add a private comment; ``public`` is explicit because Zendesk's default is public.

        The text goes as ``html_body``: ``body`` collapses runs of newlines and renders Markdown,
        and either would run placeholders, so every brace is an entity (shown as a brace, never
        read as ``{{...}}``) and the agent sees the answer exactly as it was written.
        """
        number = path_number(ticket_id)
        resp = self.http.request(
            "PUT", f"/api/v2/tickets/{number}.json", endpoint="ticket_update",
            json_body={"ticket": {"comment": {"html_body": _html(text), "public": False}}},
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
        return ticket if self.settings.wants(raw, brand_id=self.settings.brand_ids) else None

    def _ticket(self, raw: Any, emails: dict[str, str]) -> Ticket:
        raw = as_dict(raw)
        ticket_id = record_id(raw, f"{self.name}: ticket")
        status = text_or_none(raw.get("status")) or "unknown"
        requester_id = numeric_id(raw.get("requester_id"))
        count = raw.get("comment_count")
        return Ticket(
            external_id=ticket_id,
            status=status,
            resolved=self._resolved(status, raw.get("custom_status_id")),
            updated_at=parse_time(raw.get("updated_at")),
            subject=text_or_none(raw.get("subject")),
            requester_id=requester_id,
            requester_email=emails.get(requester_id) if requester_id else None,
            channel=text_or_none(as_dict(raw.get("via")).get("channel")),
            tags=text_set(raw.get("tags")),
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
        roles: dict[str, str] = {}

        def read(after: str | None) -> tuple[list[Any], str | None]:
            query = params if after is None else {**params, "page[after]": after}
            resp = self.http.request("GET", path, endpoint="ticket_comments", params=query)
            body = json_object(resp.data, "ticket_comments")
            page = body.get("comments")
            if not isinstance(page, list):
                raise MalformedResponse(
                    f"{self.name} ticket_comments: no comments list", endpoint="ticket_comments"
                )
            roles.update(_user_roles(body.get("users")))
            return page, _next_page_cursor(body, path)

        pages = follow_pages(read, None, limit=MAX_COMMENT_PAGES, noun="comments",
                             what=f"{self.name} ticket_comments: ticket {number}",
                             endpoint="ticket_comments")
        return list(chain.from_iterable(pages)), roles

    def _message(
        self, comment: dict[str, Any], comment_id: str, created_at: datetime, ticket: Ticket,
        roles: dict[str, str],
    ) -> Message:
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

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-zendesk-webhook-invocation-id") or None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Event webhooks carry ``detail.id`` (events of other domains name no ticket); a
        trigger or automation webhook sends the body the admin wrote, which must be
        ``{"ticket_id": "{{ticket.id}}"}``."""
        data = signatures.json_object(body)
        event = data.get("type")
        if isinstance(event, str) and event.startswith("zen:event-type:"):
            if not event.startswith("zen:event-type:ticket."):
                return []
            return [signatures.ticket_id(as_dict(data.get("detail")).get("id"), "detail.id")]
        return [signatures.ticket_id(data.get("ticket_id"), "ticket_id")]


def _html(text: str) -> str:
    """Plain text as HTML paragraphs, with no ``{`` left for Zendesk's placeholder engine."""
    return text_to_html(text).replace("{", "&#123;")


def _start_time(start_from: datetime) -> int:
    """The first export's start: never in the newest minute Zendesk refuses, never negative."""
    latest = time.time() - EXPORT_EXCLUSION - CLOCK_SKEW
    return max(0, int(min(utc(start_from).timestamp(), latest)))


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


def _next_page_cursor(body: dict[str, Any], path: str) -> str | None:
    """The ``page[after]`` value of the next page, or None on the last page; from
    ``links.next`` only when ``meta`` has none."""
    meta = as_dict(body.get("meta"))
    if meta.get("has_more") is not True:
        return None
    after = meta.get("after_cursor")
    if isinstance(after, str) and after:
        return after
    link = as_dict(body.get("links")).get("next")
    after = link_query(link, path, "ticket_comments").get("page[after]") \
        if isinstance(link, str) else None
    if not after:
        raise MalformedResponse("ticket_comments: has_more without a cursor",
                                endpoint="ticket_comments")
    return after


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
