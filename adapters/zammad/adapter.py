"""Zammad: ticket search with an overlap window for changes, shared drafts or internal notes.

Changes come from ticket search sorted by ``updated_at``. Search runs on Elasticsearch, which
indexes a change a moment after it happens, so a poll re-reads from the newest ``updated_at`` it
has seen minus ``overlap`` and drops what it already reported (same ticket id and same
``updated_at``); the cursor carries those pairs. Our answer becomes the ticket's shared draft when
its group allows shared drafts and no draft is there yet (an agent opens the ticket and sends
it), otherwise an internal note. A shared draft is not an article, so ``find_posted`` looks at
the draft too; once an agent sends it, the article carries our marker like any other post.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, PositiveInt, SecretStr

from adapters import signatures
from adapters.auth import BearerTokenAuth, StaticCredentials, token_authorization, union_by_key
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
    contains_marker,
)
from adapters.cursor import Cursor, Millis
from adapters.payload import (
    json_object,
    numeric_id,
    parse_time,
    path_number,
    text_or_none,
    text_set,
)
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.text import body_text, clean_body, text_to_html
from adapters.times import iso_millis, utc
from connector.core.durations import Duration
from connector.core.errors import MalformedResponse, NotFound, PermissionDenied
from connector.core.http import CallObserver

log = logging.getLogger(__name__)

API_PATH = "/api/v1"
SEARCH_MAX_PAGE = 200  # Zammad silently caps per_page at 200 on ticket search
RESOLVED_STATE_TYPES = frozenset({"closed", "merged", "removed"})
# The state type ids Zammad seeds; only used when a state comes without its type's name.
SEEDED_STATE_TYPES = {
    1: "new", 2: "open", 3: "pending reminder", 4: "pending action", 5: "closed", 6: "merged",
    7: "removed",
}
SENDER_ROLES = {"Customer": Role.CUSTOMER, "Agent": Role.AGENT, "System": Role.SYSTEM}
SEEDED_SENDERS = {1: Role.AGENT, 2: Role.CUSTOMER, 3: Role.SYSTEM}
DRAFT_PREFIX = "draft:"  # shared drafts and articles have separate id sequences
GROUP_CACHE_SECONDS = 300.0


class ZammadTokenAuth(StaticCredentials):
    """A personal access token: ``Authorization: Token token=…``."""

    token: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return token_authorization("Token token={}", self.token)


ZammadAuth = union_by_key("access_token", BearerTokenAuth, ZammadTokenAuth)


class ZammadSettings(FilteredSettings):
    """One Zammad instance. ``url`` is its address, e.g. ``https://helpdesk.example.com``."""

    api_suffix = API_PATH
    type: Literal["zammad"]
    auth: ZammadAuth
    shared_drafts: bool = Field(
        default=True,
        description="Post a shared draft where the ticket's group allows it; False: notes only.",
    )
    overlap: Duration = Field(
        default=120.0,
        description="How far back each poll re-reads; must exceed the search index's lag.",
    )
    page_size: int = Field(default=100, ge=1, le=SEARCH_MAX_PAGE)


@dataclasses.dataclass(frozen=True)
class _Hit:
    """A usable search hit: the ticket as Zammad's database has it now."""

    ticket_id: str
    updated_at: str  # exactly as Zammad wrote it: with the id, the key that dedupes reports
    when: datetime
    raw: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SearchPosition(Cursor):
    """Where the search resumes, and what was already reported.

    A *pass* reads the pages of ``updated_at >= since`` in order. ``seen`` maps ticket id to the
    ``updated_at`` already reported, for tickets changed at or after ``since`` (older ones can
    never match again). ``paged``: this pass went past page 1 under one bound, where Zammad's
    offset paging skips a hit whenever an earlier one moves to the end meanwhile; ``fresh``:
    this pass reported something. A pass that did both is followed by another one.
    """

    kind = "zammad"
    version = 2

    since: Millis
    page: PositiveInt = 1
    seen: dict[str, str] = dataclasses.field(default_factory=dict)
    paged: bool = False
    fresh: bool = False

    @classmethod
    def upgrade(cls, text: str, data: Any) -> SearchPosition | None:
        """Version 1 held the same fields, with ``v`` and without ``cursor``."""
        if isinstance(data, dict) and data.get("v") == 1 and "cursor" not in data:
            return cls.from_fields(data)
        return None


class ZammadAdapter(ReplayAdapter):
    """Zammad over its REST API v1.

    Backfill replays the search, which sorts by the index's change time: a ticket's own
    ``updated_at`` can be newer, so pages are cut by ticket, not at the first late one.
    """

    type_name = "zammad"
    capabilities = Capabilities(drafts=True, webhook="zammad-hmac-sha1")
    settings_model = ZammadSettings
    simulator = "adapters.zammad.simulator:ZammadSimulator"
    feed_order = FeedOrder.INDEXED_CHANGE
    max_backfill_pages = 2000

    settings: ZammadSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self._states: dict[int, tuple[str, str]] = {}
        self._group_drafts: dict[int, tuple[bool, float]] = {}

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; a customer-only login is refused, since its notes would be public."""
        account = self.read_account(f"{API_PATH}/users/me", "users_me", {"expand": "true"})
        user = account.record
        roles = [r for r in user.get("roles") or [] if isinstance(r, str)]
        if roles and set(roles) == {"Customer"}:
            raise PermissionDenied(
                f"{self.name} users_me: user {account.id} is a customer; internal notes and "
                "shared drafts need an agent", status=account.status, endpoint="users_me",
            )
        name = " ".join(
            str(user.get(key)) for key in ("firstname", "lastname") if user.get(key)
        ) or "unnamed"
        return f"user {account.id} ({name}), roles: {', '.join(roles) or 'unknown'}"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One search page under the cursor's bound: the tickets new or changed since reported.

        Search matches and sorts on the index, which lags; the answer shows the database. A hit
        older than the newest change seen minus ``overlap`` is surely indexed as it is, so the
        next page may start at it (a bound, immune to hits moving meanwhile). Within the overlap
        window nothing can be trusted that way, so a full page there is followed by the next
        page number, and the pass is repeated if that may have skipped a hit.
        """
        position = SearchPosition.resume(cursor, SearchPosition(utc(start_from)), self.name)
        size = self.settings.page_size
        resp = self.http.request(
            "GET", f"{API_PATH}/tickets/search", endpoint="tickets_search", params={
                "query": f"updated_at:>={_search_time(position.since)}",
                "sort_by": "updated_at", "order_by": "asc", "expand": "true",
                "per_page": size, "page": position.page,
            },
        )
        items = resp.data
        if not isinstance(items, list):
            raise MalformedResponse(
                f"{self.name} tickets_search: answer is not a list of tickets",
                endpoint="tickets_search",
            )
        hits = [hit for index, item in enumerate(items) if (hit := self._hit(index, item))]
        seen = dict(position.seen)
        new = [hit for hit in hits if seen.get(hit.ticket_id) != hit.updated_at]
        seen.update((hit.ticket_id, hit.updated_at) for hit in new)
        tickets = [ticket for hit in new if (ticket := self._report(hit)) is not None]
        newest = max(filter(None, map(parse_time, seen.values())), default=position.since)
        horizon = newest - timedelta(seconds=self.settings.overlap)
        fresh = position.fresh or bool(new)
        if len(items) >= size:
            settled = max((hit.when for hit in hits if hit.when < horizon), default=None)
            if settled is not None and settled > position.since:
                following = SearchPosition(settled, 1, _recent(seen, settled), position.paged,
                                           fresh)
            else:
                following = SearchPosition(position.since, position.page + 1, seen, True, fresh)
            return ChangePage(tickets, following.dump(), True)
        since = max(position.since, horizon)
        again = position.paged and fresh
        return ChangePage(tickets, SearchPosition(since, 1, _recent(seen, since)).dump(), again)

    def get_ticket(self, ticket_id: str) -> Ticket:
        number = path_number(ticket_id)
        ticket = self._ticket(self._ticket_raw(number, expand=True))
        return dataclasses.replace(ticket, tags=self._tags(number))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        number = path_number(ticket.external_id)
        resp = self.http.request(
            "GET", f"{API_PATH}/ticket_articles/by_ticket/{number}", endpoint="articles_by_ticket",
        )
        articles = resp.data
        if not isinstance(articles, list):
            raise MalformedResponse(
                f"{self.name} articles_by_ticket: answer is not a list of articles",
                endpoint="articles_by_ticket",
            )
        messages = self.read_entries(
            articles, f"an article on ticket {number}",
            lambda article, article_id, at: self._message(article, article_id, at, number),
        )
        # Zammad lists oldest first; the sort only guards against a reordered answer.
        return sorted(messages, key=lambda m: (m.created_at, int(m.external_id)))

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Our article (a note, or a draft an agent has sent), else our unsent shared draft."""
        found = super().find_posted(ticket, marker)
        if found is not None:
            return found
        draft = self._shared_draft(path_number(ticket.external_id))
        if draft is not None and contains_marker(draft[1], marker):
            return f"{DRAFT_PREFIX}{draft[0]}"
        return None

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """A shared draft where the group allows it and none exists, else an internal note.

        An existing shared draft is never overwritten: an agent may be editing it, and there is
        one per ticket.
        """
        number = path_number(ticket_id)
        html = text_to_html(text)
        if self.settings.shared_drafts:
            raw = self._ticket_raw(number, expand=False)
            if self._group_allows_drafts(raw.get("group_id")):
                if self._shared_draft(number) is None:
                    return self._put_draft(number, raw, html)
                log.info("%s: ticket %s already has a shared draft; adding an internal note",
                         self.name, number)
        return self._post_note(number, html)

    def _put_draft(self, number: str, raw: dict[str, Any], html: str) -> Posted:
        new_article = {
            "type": "email", "internal": False, "content_type": "text/html", "body": html,
            "to": self._customer_email(raw.get("customer_id")), "cc": "",
            "subject": raw.get("title") if isinstance(raw.get("title"), str) else "",
            "ticket_id": int(number),
        }
        resp = self.http.request(
            "PUT", f"{API_PATH}/tickets/{number}/shared_draft", endpoint="shared_draft_update",
            json_body={"form_id": uuid.uuid4().hex, "new_article": new_article,
                       "ticket_attributes": {}},
        )
        draft_id = self.answered_id(resp, "shared_draft_update", number, "draft",
                                    "shared_draft_id")
        return Posted(f"{DRAFT_PREFIX}{draft_id}", "draft")

    def _post_note(self, number: str, html: str) -> Posted:
        """An internal note; ``internal`` is explicit because Zammad's default is public."""
        resp = self.http.request(
            "POST", f"{API_PATH}/ticket_articles", endpoint="article_create", idempotent=False,
            json_body={"ticket_id": int(number), "body": html, "content_type": "text/html",
                       "type": "note", "internal": True},
        )
        return Posted(self.answered_id(resp, "article_create", number, "article"), "note")

    # ----- helpers ---------------------------------------------------------------------------
    def _hit(self, index: int, item: Any) -> _Hit | None:
        raw = as_dict(item)
        ticket_id, updated = numeric_id(raw.get("id")), raw.get("updated_at")
        when = parse_time(updated)
        if ticket_id is None or not isinstance(updated, str) or when is None:
            log.warning("%s: skipped search hit %d: no ticket id or updated_at", self.name, index)
            return None
        return _Hit(ticket_id, updated, when, raw)

    def _report(self, hit: _Hit) -> Ticket | None:
        """The ticket to report for a new hit, or None when filtered out or unusable."""
        if not self.settings.wants_ids(hit.raw):
            return None
        try:
            ticket = self._ticket(hit.raw)
        except MalformedResponse as exc:
            log.warning("%s: skipped ticket %s from search: %s", self.name, hit.ticket_id, exc)
            return None
        ticket = dataclasses.replace(ticket, tags=self._tags(hit.ticket_id))
        return ticket if self.settings.wants_tags(ticket.tags) else None

    def _ticket_raw(self, number: str, *, expand: bool) -> dict[str, Any]:
        resp = self.http.request(
            "GET", f"{API_PATH}/tickets/{number}", endpoint="ticket_show",
            params={"expand": "true"} if expand else None,
        )
        return json_object(resp.data, "ticket_show")

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        ticket_id = numeric_id(raw.get("id"))
        state_id = raw.get("state_id")
        if ticket_id is None or not isinstance(state_id, int) or isinstance(state_id, bool):
            raise MalformedResponse(f"{self.name}: ticket without id or state_id")
        state_name, state_type = self._state(state_id)
        return Ticket(
            external_id=ticket_id,
            status=text_or_none(raw.get("state")) or state_name,
            resolved=state_type in RESOLVED_STATE_TYPES,
            updated_at=parse_time(raw.get("updated_at")),
            subject=text_or_none(raw.get("title")),
            requester_id=numeric_id(raw.get("customer_id")),
            channel=text_or_none(raw.get("create_article_type")),
            url=f"{self.settings.url}/#ticket/zoom/{ticket_id}",
        )

    def _state(self, state_id: int) -> tuple[str, str]:
        """(name, state type) of a state; states are loaded once, and again for a new one
        (an admin may add custom states at any time)."""
        if state_id not in self._states:
            self._load_states()
        found = self._states.get(state_id)
        if found is None:
            log.warning("%s: unknown ticket state %d; treating it as open", self.name, state_id)
            return "unknown", "open"
        return found

    def _load_states(self) -> None:
        resp = self.http.request(
            "GET", f"{API_PATH}/ticket_states", endpoint="ticket_states",
            params={"expand": "true"},
        )
        states = resp.data if isinstance(resp.data, list) else []
        self._states = {}
        for item in states:
            state = as_dict(item)
            state_id, name = state.get("id"), state.get("name")
            if not isinstance(state_id, int) or not isinstance(name, str):
                continue
            named = state.get("state_type")
            self._states[state_id] = (
                name,
                named if isinstance(named, str)
                else SEEDED_STATE_TYPES.get(state.get("state_type_id"), "open"),
            )

    def _tags(self, number: str) -> frozenset[str]:
        """The ticket's tags; none when it vanished meanwhile (its read will notice)."""
        try:
            resp = self.http.request(
                "GET", f"{API_PATH}/tags", endpoint="ticket_tags",
                params={"object": "Ticket", "o_id": number},
            )
        except NotFound:
            return frozenset()
        return text_set(as_dict(resp.data).get("tags"))

    def _message(
        self, article: dict[str, Any], article_id: str, created_at: datetime, number: str
    ) -> Message:
        role = SENDER_ROLES.get(article.get("sender")) or SEEDED_SENDERS.get(
            article.get("sender_id"), Role.SYSTEM
        )
        author = numeric_id(article.get("origin_by_id")) or numeric_id(article.get("created_by_id"))
        return Message(
            external_id=article_id,
            ticket_id=number,
            created_at=created_at,
            role=role,
            public=article.get("internal") is False,
            body=_body(article, role),
            author_id=author,
        )

    def _shared_draft(self, number: str) -> tuple[str, str] | None:
        """(id, text) of the ticket's shared draft, or None when it has none."""
        resp = self.http.request(
            "GET", f"{API_PATH}/tickets/{number}/shared_draft", endpoint="shared_draft_show",
        )
        body = as_dict(resp.data)
        draft_id = numeric_id(body.get("shared_draft_id"))
        if draft_id is None:
            return None
        drafts = as_dict(as_dict(body.get("assets")).get("TicketSharedDraftZoom"))
        article = as_dict(as_dict(drafts.get(draft_id)).get("new_article"))
        html = article.get("body")
        return draft_id, body_text(html=html) if isinstance(html, str) else ""

    def _group_allows_drafts(self, group_id: Any) -> bool:
        """The group's ``shared_drafts`` flag, cached; agents never see drafts elsewhere.

        Older Zammad releases let only ``admin.group`` read groups: without that permission the
        answer is a note, which every agent sees.
        """
        if not isinstance(group_id, int):
            return False
        cached = self._group_drafts.get(group_id)
        if cached is not None and time.monotonic() - cached[1] < GROUP_CACHE_SECONDS:
            return cached[0]
        try:
            resp = self.http.request(
                "GET", f"{API_PATH}/groups/{group_id}", endpoint="group_show"
            )
            allowed = as_dict(resp.data).get("shared_drafts") is True
        except PermissionDenied:
            log.warning("%s: may not read group %d (older Zammad needs admin.group for it); "
                        "posting internal notes there", self.name, group_id)
            allowed = False
        self._group_drafts[group_id] = (allowed, time.monotonic())
        return allowed

    def _customer_email(self, customer_id: Any) -> str:
        """The draft's recipient, so the agent who applies it need not type it; "" if unknown."""
        if not isinstance(customer_id, int):
            return ""
        try:
            resp = self.http.request("GET", f"{API_PATH}/users/{customer_id}",
                                     endpoint="user_show")
        except (NotFound, PermissionDenied):
            return ""
        email = as_dict(resp.data).get("email")
        return email if isinstance(email, str) else ""

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-zammad-delivery") or None

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """The default payload holds the whole ticket; a customised one must keep
        ``{"ticket": {"id": ...}}``."""
        data = signatures.json_object(body)
        return [signatures.ticket_id(as_dict(data.get("ticket")).get("id"), "ticket.id")]


def _recent(seen: dict[str, str], since: datetime) -> dict[str, str]:
    """Entries that the query from ``since`` can still return."""
    return {
        ticket_id: updated for ticket_id, updated in seen.items()
        if (when := parse_time(updated)) is not None and when >= since
    }


def _search_time(when: datetime) -> str:
    """A time inside a query_string: unescaped colons would end the field and break the query,
    which Zammad answers with no tickets at all."""
    return iso_millis(when).replace(":", "\\:")


def _body(article: dict[str, Any], role: Role) -> str:
    """Plain text of an article; a customer's quoted history and signature are cut off."""
    raw = article.get("body")
    if not isinstance(raw, str):
        return ""
    html = "html" in str(article.get("content_type") or "").lower()
    read = clean_body if role == Role.CUSTOMER else body_text
    return read(html=raw) if html else read(text=raw)
