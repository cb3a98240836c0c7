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

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, SecretStr

from adapters import signatures
from adapters.auth import Credentials, OAuthGrant
from adapters.base import (
    AdapterSettings,
    Capabilities,
    ChangePage,
    Message,
    Posted,
    Role,
    Ticket,
    as_dict,
)
from adapters.cursor import Cursor, Seconds
from adapters.pacing import SlidingWindow
from adapters.paging import PageReader, follow_pages, link_query
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
from adapters.times import iso_seconds, server_time, whole_second
from connector.core.errors import (
    MalformedResponse,
    PermissionDenied,
)
from connector.core.http import CallObserver

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
MAX_THREAD_PAGES = 40  # 50 threads a page; Help Scout stops conversations far below 2000
MAX_MAILBOX_PAGES = 20
# Help Scout refuses more than 12 writes in 5 seconds; the window is kept half a second longer
# here, because the server counts a write when it arrives, after our clock started it.
WRITE_BURST = (12, 5.5)


class HelpScoutAuth(Credentials):
    """The App ID and App Secret of a Help Scout app (Your Profile → My Apps).

    The client-credentials token acts as the app's owner, so drafts are written by that user.
    """

    app_id: str = Field(min_length=1)
    app_secret: SecretStr = Field(min_length=1)


class HelpScoutSettings(AdapterSettings):
    """One Help Scout account. ``url`` is the API root; it only changes for the simulator.

    ``mailbox_ids`` limits polling to those inboxes (all the app owner sees when empty).
    """

    api_suffix = "/v2"
    type: Literal["helpscout"]
    url: str = API_URL
    auth: HelpScoutAuth
    mailbox_ids: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class Walk(Cursor):
    """Where a poll stands: one walk through the pages of conversations changed since ``since``.

    ``started`` is the server time of the walk's first page (None before it); ``total`` the
    number of matches the last page reported, to notice conversations that left the list.
    """

    kind = "helpscout"
    version = 2

    since: Seconds
    page: PositiveInt = 1
    started: Seconds | None = None
    total: NonNegativeInt = 0

    @classmethod
    def upgrade(cls, text: str, data: Any) -> Walk | None:
        """``hs1|<since>|<page>|<started, or ->|<total>``: the cursor before version 2."""
        parts = text.split("|")
        if len(parts) != 5 or parts[0] != "hs1" or not (parts[2].isdigit()
                                                        and parts[4].isdigit()):
            return None
        return cls.from_fields({"since": parts[1], "page": int(parts[2]),
                                "started": None if parts[3] == "-" else parts[3],
                                "total": int(parts[4])})


class HelpScoutAdapter(ReplayAdapter):
    """Help Scout over its Inbox (Mailbox) API 2.0, with native draft replies.

    Backfill is one walk of the live feed from ``since``. The walk is in creation order and
    Help Scout shows no modification time, so ``until`` filters each page on a conversation's
    latest activity (``updated_at``).
    """

    type_name = "helpscout"
    capabilities = Capabilities(drafts=True, webhook="helpscout-hmac-sha1")
    settings_model = HelpScoutSettings
    simulator = "adapters.helpscout.simulator:HelpScoutSimulator"
    retry_after_header = RATE_LIMIT_HEADER
    feed_order = FeedOrder.UNORDERED
    max_backfill_pages = 4000  # 100,000 conversations: a bound for the loop, not a real limit

    settings: HelpScoutSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        auth = self.settings.auth
        # Client credentials as a form; a 401 (revoked token) gets one new token, one more try.
        self.use_oauth(OAuthGrant(TOKEN_PATH, auth.app_id, auth.app_secret.get_secret_value(),
                                  as_json=False), "Help Scout")
        self._writes = SlidingWindow(*WRITE_BURST)

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """The app owner the token acts as, and that the configured mailboxes are visible."""
        account = self.read_account("/v2/users/me", "users_me")
        user, user_id = account.record, account.id
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
        walk = Walk.resume(cursor, Walk(whole_second(start_from)), self.name)
        params: dict[str, Any] = {
            "status": "all", "modifiedSince": iso_seconds(walk.since), "sortField": "createdAt",
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
        started = walk.started or server_time(resp.headers)
        page = as_dict(body.get("page"))
        total, pages, size = (_count(page.get(key)) for key in ("totalElements", "totalPages",
                                                                 "size"))
        next_page = walk.page + 1
        if walk.started is not None and total < walk.total and size:
            # Conversations left the list (merged, moved away) before this page was read: the
            # first ones meant for it moved up onto the page before, so read that one again.
            next_page = max(1, walk.page - math.ceil((walk.total - total) / size))
        if next_page <= pages:
            return ChangePage(tickets, Walk(walk.since, next_page, started, total).dump(), True)
        return ChangePage(tickets, Walk(started - INDEX_OVERLAP).dump(), False)

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"/v2/conversations/{number}",
                                 endpoint="conversation_show")
        return self._ticket(json_object(resp.data, "conversation_show"))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        number = path_number(ticket.external_id)
        messages = self.read_entries(
            self._threads(number), f"a thread of conversation {number}",
            lambda thread, thread_id, at: self._message(thread, thread_id, at, number),
            time_key="createdAt",
        )
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
        payload: dict[str, Any] = {"customer": {"id": int(customer_id)},
                                   "text": text_to_html(text), "draft": True}
        status = conversation.get("status")
        if status in DRAFT_STATUSES:
            payload["status"] = status
        self._writes.acquire()
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

    # ----- helpers ---------------------------------------------------------------------------
    def _mailbox_ids(self) -> set[int]:
        """Every mailbox the token's user can see; only asked when a filter names some."""
        if not self.settings.mailbox_ids:
            return set()
        pages = follow_pages(self._list_reader("/v2/mailboxes", "mailboxes", "mailboxes"),
                             {"page": 1}, limit=MAX_MAILBOX_PAGES, noun="mailboxes",
                             what=f"{self.name} mailboxes", endpoint="mailboxes", strict=False)
        return {mailbox_id for item in chain.from_iterable(pages)
                if isinstance(mailbox_id := as_dict(item).get("id"), int)}

    def _list_reader(
        self, path: str, key: str, endpoint: str
    ) -> PageReader[dict[str, Any], Any]:
        """Reads one page of a HAL list: its ``_embedded`` items and the next page's query."""
        def read(params: dict[str, Any]) -> tuple[list[Any], dict[str, Any] | None]:
            resp = self.http.request("GET", path, endpoint=endpoint, params=params)
            body = json_object(resp.data, endpoint)
            return _embedded(body, key, endpoint), _next_page(body, path, endpoint)
        return read

    def _list_item(self, page: int, index: int, item: Any) -> Ticket | None:
        try:
            return self._ticket(as_dict(item))
        except MalformedResponse:
            log.warning("%s: skipped conversation %d on page %d: no usable id", self.name,
                        index, page)
            return None

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        status = text_or_none(raw.get("status")) or "unknown"
        customer = as_dict(raw.get("primaryCustomer"))
        tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
        return Ticket(
            external_id=record_id(raw, f"{self.name}: conversation"),
            status=status,
            resolved=status in RESOLVED_STATUSES or raw.get("state") == "deleted",
            updated_at=_last_activity(raw),
            subject=text_or_none(raw.get("subject")),
            requester_id=numeric_id(customer.get("id")),
            requester_email=text_or_none(customer.get("email")),
            channel=text_or_none(raw.get("type")),
            tags=text_set([as_dict(tag).get("tag") for tag in tags]),
            url=text_or_none(as_dict(as_dict(raw.get("_links")).get("web")).get("href")),
        )

    def _threads(self, number: str) -> list[Any]:
        """Every thread of a conversation (newest first, as Help Scout pages them)."""
        read = self._list_reader(f"/v3/conversations/{number}/threads", "threads", "threads_v3")
        pages = follow_pages(read, {"page": 1}, limit=MAX_THREAD_PAGES, noun="threads",
                             what=f"{self.name} threads_v3: conversation {number}",
                             endpoint="threads_v3")
        return list(chain.from_iterable(pages))

    def _message(
        self, thread: dict[str, Any], thread_id: str, created_at: datetime, ticket_id: str
    ) -> Message | None:
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
        return [signatures.ticket_id(signatures.json_object(body).get("id"), "id")]


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


def _embedded(body: dict[str, Any], key: str, endpoint: str) -> list[Any]:
    """The HAL list; Help Scout leaves ``_embedded`` out entirely when a page is empty."""
    if "_embedded" not in body:
        return []
    items = as_dict(body["_embedded"]).get(key, [])
    if not isinstance(items, list):
        raise MalformedResponse(f"{endpoint}: _embedded.{key} is not a list", endpoint=endpoint)
    return items


def _next_page(body: dict[str, Any], path: str, endpoint: str) -> dict[str, Any] | None:
    """The query of the page after ``body``, or None at the end.

    Help Scout's ``_links.next`` is what says a further page exists (its absence ends the
    list); only a page without links falls back to ``page.totalPages``.
    """
    links = as_dict(body.get("_links"))
    href = as_dict(links.get("next")).get("href")
    if isinstance(href, str):
        return link_query(href, path, endpoint)
    page = as_dict(body.get("page"))
    number, pages = _count(page.get("number")), _count(page.get("totalPages"))
    if links or not number or number >= pages:
        return None
    return {"page": number + 1}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0



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
