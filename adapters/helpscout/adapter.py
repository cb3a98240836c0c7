"""Help Scout (Inbox API 2.0): conversations by ``modifiedSince``, our answer as a real draft.

Help Scout has true drafts: ``POST /v2/conversations/{id}/reply`` with ``draft: true`` leaves a
reply an agent reviews and sends. The request names the conversation's current status, because a
reply without one reactivates the conversation. Authentication is OAuth2 client credentials: the
adapter fetches a bearer token from ``/v2/oauth2/token``, renews it before it expires (tokens live
about two days) and once more when Help Scout answers 401.

Changes come from the conversation list with ``status=all`` (the default lists only active
conversations). Pages are numbered, not cursors, so a walk through them sorts by creation time
under one fixed ``modifiedSince``: a conversation changed mid-walk keeps its position instead of
jumping to the end and pushing an unseen one back onto a page already read. The next walk starts
from the server's clock at the first page, minus an overlap for the search index behind the list.
Threads are read from the v3 endpoint, the one that reports Help Scout's AI (``system_user``)
authors as such; v2 calls them users.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from adapters import webhooks
from adapters.base import (
    Adapter,
    AdapterSettings,
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
)
from adapters.payload import json_object, numeric_id, parse_time, path_number
from adapters.text import body_text, clean_body
from connector.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    PermissionDenied,
)
from connector.http import CallObserver, HttpClient, RetryPolicy, Timeouts, header_retry_after
from connector.redact import register_secret

log = logging.getLogger(__name__)

API_URL = "https://api.helpscout.net"
RATE_LIMIT_HEADER = "X-RateLimit-Retry-After"  # Help Scout's only wait hint on a 429
TOKEN_PATH = "/v2/oauth2/token"
RESOLVED_STATUSES = frozenset({"closed", "spam"})
DRAFT_STATUSES = frozenset({"active", "pending", "closed"})  # what a reply may leave it in
PUBLIC_TYPES = frozenset({"customer", "message", "chat", "beaconchat"})
CHAT_TYPES = frozenset({"chat", "beaconchat"})
AGENT_TYPES = frozenset({"message", "note", "phone", "forwardparent", "forwardchild"})
SYSTEM_SOURCES = frozenset({"workflows"})  # replies a workflow sent, not a person
# Help Scout's list is search-backed: a change can reach it seconds after it happened, so each
# walk starts this long before the previous one did (conversations seen twice cost a re-read).
INDEX_OVERLAP = timedelta(seconds=30)
REFRESH_MARGIN = 300.0  # renew a token this long before it expires (at most half its life)
MAX_THREAD_PAGES = 40  # 50 threads a page; Help Scout stops conversations far below 2000
MAX_MAILBOX_PAGES = 20
MAX_BACKFILL_PAGES = 4000  # 100,000 conversations: a bound for the loop, not a real limit
CURSOR_VERSION = "hs1"


class HelpScoutAuth(BaseModel):
    """The App ID and App Secret of a Help Scout app (Your Profile → My Apps).

    The client-credentials token acts as the app's owner, so drafts are written by that user.
    """

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(min_length=1)
    app_secret: SecretStr = Field(min_length=1)


class HelpScoutSettings(AdapterSettings):
    """One Help Scout account. ``url`` is the API root; it only changes for the simulator.

    ``mailbox_ids`` limits polling to those inboxes (all the app owner sees when empty).
    """

    type: Literal["helpscout"]
    url: str = API_URL
    auth: HelpScoutAuth
    mailbox_ids: list[int] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _api_root(cls, value: str) -> str:
        """Accept the ``/v2`` base people copy from Help Scout's docs; paths add it themselves."""
        return value.removesuffix("/v2")


@dataclass(frozen=True)
class _Walk:
    """Where a poll stands: one walk through the pages of conversations changed since ``since``.

    ``started`` is the server time of the walk's first page (None before it); ``total`` the
    number of matches the last page reported, to notice conversations that left the list.
    """

    since: datetime
    page: int = 1
    started: datetime | None = None
    total: int = 0

    def encode(self) -> str:
        started = _iso(self.started) if self.started else "-"
        return f"{CURSOR_VERSION}|{_iso(self.since)}|{self.page}|{started}|{self.total}"

    @classmethod
    def decode(cls, cursor: str) -> _Walk | None:
        parts = cursor.split("|")
        if len(parts) != 5 or parts[0] != CURSOR_VERSION:
            return None
        since = parse_time(parts[1])
        started = None if parts[3] == "-" else parse_time(parts[3])
        if since is None or (started is None and parts[3] != "-"):
            return None
        if not (parts[2].isdigit() and parts[4].isdigit() and int(parts[2]) >= 1):
            return None
        return cls(since, int(parts[2]), started, int(parts[4]))


class _Tokens:
    """Client-credentials access tokens: fetched on first use, renewed before they expire.

    A separate client fetches them, because the API client asks for auth headers on every
    attempt and would otherwise ask itself for a token while fetching one.
    """

    def __init__(self, settings: HelpScoutSettings, observer: CallObserver | None) -> None:
        self._app_id = settings.auth.app_id
        self._secret = settings.auth.app_secret.get_secret_value()
        register_secret(self._secret)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.http = HttpClient(
            settings.url, name=settings.name,
            timeouts=Timeouts(connect=5.0, read=settings.timeout),
            retry=RetryPolicy(), retry_after_from=header_retry_after(RATE_LIMIT_HEADER),
            observer=observer,
        )

    def header(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def renew(self) -> bool:
        with self._lock:
            self._fetch()
        return True

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self._app_id,
                "client_secret": self._secret}
        try:
            resp = self.http.request("POST", TOKEN_PATH, endpoint="oauth_token", data=form,
                                     idempotent=True)
        except (BadRequest, AuthenticationFailed) as exc:  # OAuth servers answer 400 or 401
            raise AuthenticationFailed(
                f"{self.http.name} oauth_token: Help Scout refused the app id and secret",
                status=exc.status, detail=exc.detail, endpoint="oauth_token",
            ) from None
        body = as_dict(resp.data)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise MalformedResponse(f"{self.http.name} oauth_token: no access_token",
                                    status=resp.status, endpoint="oauth_token")
        register_secret(token)
        lifetime = body.get("expires_in")
        now = time.monotonic()
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
            self._renew_at = now + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        else:  # no lifetime given: keep it until Help Scout answers 401
            self._renew_at = math.inf
        self._token = token

    def close(self) -> None:
        self.http.close()


class HelpScoutAdapter(Adapter):
    """Help Scout over its Inbox (Mailbox) API 2.0, with native draft replies."""

    type_name = "helpscout"
    capabilities = Capabilities(drafts=True, webhook="helpscout-hmac-sha1")
    settings_model = HelpScoutSettings
    simulator = "adapters.helpscout.simulator:HelpScoutSimulator"
    retry_after_header = RATE_LIMIT_HEADER

    settings: HelpScoutSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self._tokens = _Tokens(self.settings, observer)

    def auth_headers(self) -> dict[str, str]:
        return self._tokens.header()

    def refresh_credentials(self) -> bool:
        """A 401 means the token expired early or was revoked: one new token, one more try."""
        return self._tokens.renew()

    def close(self) -> None:
        self._tokens.close()
        super().close()

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """The app owner the token acts as, and that the configured mailboxes are visible."""
        resp = self.http.request("GET", "/v2/users/me", endpoint="users_me")
        user = json_object(resp.data, "users_me")
        user_id = numeric_id(user.get("id"))
        if user_id is None:
            raise MalformedResponse(f"{self.name} users_me: no user id", endpoint="users_me")
        name = " ".join(
            part for part in (user.get("firstName"), user.get("lastName"))
            if isinstance(part, str) and part
        ) or "unnamed"
        missing = sorted(set(self.settings.mailbox_ids) - self._mailbox_ids())
        if missing:
            raise PermissionDenied(
                f"{self.name} mailboxes: user {user_id} cannot see mailbox(es) "
                f"{', '.join(map(str, missing))}", endpoint="mailboxes",
            )
        return f"{user.get('role') or 'user'} {user_id} ({name})"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of the current walk; the last page of a walk starts the next one."""
        walk = _Walk.decode(cursor) if cursor else None
        if walk is None:
            if cursor:
                log.warning("%s: unreadable cursor %r; starting from start_from", self.name,
                            cursor[:80])
            walk = _Walk(_utc(start_from).replace(microsecond=0))
        params: dict[str, Any] = {
            "status": "all", "modifiedSince": _iso(walk.since), "sortField": "createdAt",
            "sortOrder": "asc", "page": walk.page,
        }
        if self.settings.mailbox_ids:
            params["mailbox"] = ",".join(map(str, self.settings.mailbox_ids))
        resp = self.http.request("GET", "/v2/conversations", endpoint="conversations_list",
                                 params=params)
        body = json_object(resp.data, "conversations_list")
        items = _embedded(body, "conversations", "conversations_list")
        tickets = [
            ticket for index, item in enumerate(items)
            if (ticket := self._list_item(walk.page, index, item)) is not None
        ]
        started = walk.started or _server_time(resp.headers)
        page = as_dict(body.get("page"))
        total, pages, size = (_count(page.get(key)) for key in ("totalElements", "totalPages",
                                                                 "size"))
        next_page = walk.page + 1
        if walk.started is not None and total < walk.total and size:
            # Conversations left the list (merged, moved away) before this page was read: the
            # first ones meant for it moved up onto the page before, so read that one again.
            next_page = max(1, walk.page - math.ceil((walk.total - total) / size))
        if next_page <= pages:
            return ChangePage(tickets, _Walk(walk.since, next_page, started, total).encode(), True)
        return ChangePage(tickets, _Walk(started - INDEX_OVERLAP).encode(), False)

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"/v2/conversations/{number}",
                                 endpoint="conversation_show")
        return self._ticket(json_object(resp.data, "conversation_show"))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        number = path_number(ticket.external_id)
        messages = [
            message for thread in self._threads(number)
            if (message := self._message(thread, ticket.external_id)) is not None
        ]
        return sorted(messages, key=lambda m: (m.created_at, int(m.external_id)))

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """A draft reply to the conversation's customer that leaves its status as it is."""
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"/v2/conversations/{number}",
                                 endpoint="conversation_show")
        conversation = json_object(resp.data, "conversation_show")
        customer_id = numeric_id(as_dict(conversation.get("primaryCustomer")).get("id"))
        if customer_id is None:
            raise MalformedResponse(
                f"{self.name} conversation_show: conversation {number} has no primary customer "
                "to address a draft to", endpoint="conversation_show",
            )
        payload: dict[str, Any] = {"customer": {"id": int(customer_id)}, "text": _to_html(text),
                                   "draft": True}
        status = conversation.get("status")
        if status in DRAFT_STATUSES:
            payload["status"] = status
        created = self.http.request(
            "POST", f"/v2/conversations/{number}/reply", endpoint="reply_create",
            json_body=payload, idempotent=False, expect_json=False,
        )
        thread_id = numeric_id(created.headers.get("Resource-ID"))
        if thread_id is None:
            raise MalformedResponse(
                f"{self.name} reply_create: draft created on conversation {number} but no "
                "Resource-ID header in the answer", status=created.status, endpoint="reply_create",
            )
        return Posted(thread_id, "draft")

    # ----- backfill --------------------------------------------------------------------------
    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """One walk of the live feed from ``since``, its position kept in this generator.

        The walk is in creation order and Help Scout shows no modification time, so ``until``
        filters each page on a conversation's latest activity (``updated_at``).
        """
        cursor: str | None = None
        for _ in range(MAX_BACKFILL_PAGES):
            page = self.poll_changes(cursor, since)
            yield [
                ticket for ticket in page.tickets
                if until is None or ticket.updated_at is None or ticket.updated_at <= until
            ]
            if not page.more:
                return
            cursor = page.cursor
        log.warning("%s: backfill listing stopped after %d pages", self.name, MAX_BACKFILL_PAGES)

    # ----- helpers ---------------------------------------------------------------------------
    def _mailbox_ids(self) -> set[int]:
        """Every mailbox the token's user can see; only asked when a filter names some."""
        if not self.settings.mailbox_ids:
            return set()
        seen: set[int] = set()
        for page in range(1, MAX_MAILBOX_PAGES + 1):
            resp = self.http.request("GET", "/v2/mailboxes", endpoint="mailboxes",
                                     params={"page": page})
            body = json_object(resp.data, "mailboxes")
            for item in _embedded(body, "mailboxes", "mailboxes"):
                mailbox_id = as_dict(item).get("id")
                if isinstance(mailbox_id, int):
                    seen.add(mailbox_id)
            if page >= _count(as_dict(body.get("page")).get("totalPages")):
                break
        return seen

    def _list_item(self, page: int, index: int, item: Any) -> Ticket | None:
        try:
            return self._ticket(as_dict(item))
        except MalformedResponse:
            log.warning("%s: skipped conversation %d on page %d: no usable id", self.name,
                        index, page)
            return None

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        conversation_id = numeric_id(raw.get("id"))
        if conversation_id is None:
            raise MalformedResponse(f"{self.name}: conversation without an id")
        status = raw.get("status") if isinstance(raw.get("status"), str) else "unknown"
        customer = as_dict(raw.get("primaryCustomer"))
        email_address = customer.get("email")
        channel = raw.get("type")
        tags = raw.get("tags")
        web = as_dict(as_dict(raw.get("_links")).get("web")).get("href")
        return Ticket(
            external_id=conversation_id,
            status=status,
            resolved=status in RESOLVED_STATUSES or raw.get("state") == "deleted",
            updated_at=_last_activity(raw),
            subject=raw.get("subject") if isinstance(raw.get("subject"), str) else None,
            requester_id=numeric_id(customer.get("id")),
            requester_email=email_address if isinstance(email_address, str) else None,
            channel=channel if isinstance(channel, str) else None,
            tags=frozenset(
                name for tag in (tags if isinstance(tags, list) else [])
                if isinstance(name := as_dict(tag).get("tag"), str)
            ),
            url=web if isinstance(web, str) else None,
        )

    def _threads(self, number: str) -> list[Any]:
        """Every thread of a conversation (newest first, as Help Scout pages them)."""
        path = f"/v3/conversations/{number}/threads"
        threads: list[Any] = []
        for page in range(1, MAX_THREAD_PAGES + 1):
            resp = self.http.request("GET", path, endpoint="threads_v3", params={"page": page})
            body = json_object(resp.data, "threads_v3")
            threads.extend(_embedded(body, "threads", "threads_v3"))
            if page >= _count(as_dict(body.get("page")).get("totalPages")):
                return threads
        raise MalformedResponse(
            f"{self.name} threads_v3: conversation {number} has more than {MAX_THREAD_PAGES} "
            "pages of threads", endpoint="threads_v3",
        )

    def _message(self, item: Any, ticket_id: str) -> Message | None:
        thread = as_dict(item)
        thread_id = numeric_id(thread.get("id"))
        created_at = parse_time(thread.get("createdAt"))
        if thread_id is None or created_at is None:
            log.warning("%s: skipped a thread of conversation %s without id or time", self.name,
                        ticket_id)
            return None
        html = thread.get("body")  # line items have none
        if html is not None and not isinstance(html, str):
            log.warning("%s: skipped thread %s of conversation %s: its body is not text",
                        self.name, thread_id, ticket_id)
            return None
        kind = thread.get("type")
        author = as_dict(thread.get("createdBy"))
        role = _role(kind, author.get("type"), as_dict(thread.get("source")).get("type"))
        return Message(
            external_id=thread_id,
            ticket_id=ticket_id,
            created_at=created_at,
            role=role,
            public=kind in PUBLIC_TYPES and thread.get("state") == "published",
            body=clean_body(html=html) if role is Role.CUSTOMER else body_text(html=html),
            author_id=numeric_id(author.get("id")),
        )

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """Every ``convo.*`` event carries the conversation (``convo.deleted`` only its id);
        customer, rating, tag and test (``helpscout.test``) events name none. Help Scout sends
        no delivery id, so a redelivery costs one more re-read."""
        if not headers.get("x-helpscout-event", "").startswith("convo."):
            return []
        return [webhooks.ticket_id(webhooks.json_object(body).get("id"), "id")]


def _role(kind: Any, author_type: Any, source_type: Any) -> Role:
    """Who speaks in a thread, by its type first: a customer thread is the customer's words even
    when an agent typed it in; line items and AI (``system_user``) authors are automatic."""
    if kind == "lineitem" or author_type == "system_user":
        return Role.SYSTEM
    if kind == "customer" or (kind in CHAT_TYPES and author_type == "customer"):
        return Role.CUSTOMER
    if kind in CHAT_TYPES or kind in AGENT_TYPES:
        return Role.SYSTEM if source_type in SYSTEM_SOURCES else Role.AGENT
    return Role.SYSTEM  # a thread type Help Scout added later: never a question to answer


def _to_html(text: str) -> str:
    """Plain text as the HTML Help Scout stores: paragraphs on blank lines, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip()) if p]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)






def _embedded(body: dict[str, Any], key: str, endpoint: str) -> list[Any]:
    """The HAL list; Help Scout leaves ``_embedded`` out entirely when a page is empty."""
    if "_embedded" not in body:
        return []
    items = as_dict(body["_embedded"]).get(key, [])
    if not isinstance(items, list):
        raise MalformedResponse(f"{endpoint}: _embedded.{key} is not a list", endpoint=endpoint)
    return items


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0




def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: datetime) -> str:
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")




def _server_time(headers: Any) -> datetime:
    """Help Scout's own clock from the ``Date`` header; ours only when it sends none."""
    try:
        when = email.utils.parsedate_to_datetime(headers.get("Date") or "")
    except (TypeError, ValueError):
        return datetime.now(UTC).replace(microsecond=0)
    return _utc(when)


def _last_activity(raw: dict[str, Any]) -> datetime | None:
    """Latest of the times a conversation shows; Help Scout does not expose its modifiedAt."""
    times = [
        parse_time(value) for value in (
            raw.get("createdAt"), raw.get("userUpdatedAt"), raw.get("closedAt"),
            as_dict(raw.get("customerWaitingSince")).get("time"),
        )
    ]
    known = [t for t in times if t is not None]
    return max(known) if known else None
