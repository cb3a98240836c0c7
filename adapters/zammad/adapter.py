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
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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
from adapters.text import body_text, clean_body, text_to_html
from connector.durations import Duration
from connector.errors import MalformedResponse, NotFound, PermissionDenied
from connector.http import CallObserver
from connector.redact import register_secret

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
CURSOR_VERSION = 1
MAX_BACKFILL_PAGES = 2000


class ZammadTokenAuth(BaseModel):
    """A personal access token: ``Authorization: Token token=…``."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(min_length=1)


ZammadAuth = union_by_key("access_token", BearerTokenAuth, ZammadTokenAuth)


class ZammadSettings(AdapterSettings):
    """One Zammad instance. ``url`` is its address, e.g. ``https://helpdesk.example.com``.

    The filters narrow which tickets the engine sees; a ticket must match every filter that is
    set (``tags``: at least one of the listed tags).
    """

    type: Literal["zammad"]
    auth: ZammadAuth
    group_ids: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    shared_drafts: bool = Field(
        default=True,
        description="Post a shared draft where the ticket's group allows it; False: notes only.",
    )
    overlap: Duration = Field(
        default=120.0,
        description="How far back each poll re-reads; must exceed the search index's lag.",
    )
    page_size: int = Field(default=100, ge=1, le=SEARCH_MAX_PAGE)

    @field_validator("url")
    @classmethod
    def _instance_root(cls, value: str) -> str:
        """Accept the API base people copy from Zammad's docs; we add ``/api/v1`` ourselves."""
        return value.removesuffix(API_PATH)


@dataclasses.dataclass(frozen=True)
class _Hit:
    """A usable search hit: the ticket as Zammad's database has it now."""

    ticket_id: str
    updated_at: str  # exactly as Zammad wrote it: with the id, the key that dedupes reports
    when: datetime
    raw: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class _Position:
    """Where the search resumes, and what was already reported.

    A *pass* reads the pages of ``updated_at >= since`` in order. ``seen`` maps ticket id to the
    ``updated_at`` already reported, for tickets changed at or after ``since`` (older ones can
    never match again). ``paged``: this pass went past page 1 under one bound, where Zammad's
    offset paging skips a hit whenever an earlier one moves to the end meanwhile; ``fresh``:
    this pass reported something. A pass that did both is followed by another one.
    """

    since: datetime
    page: int = 1
    seen: dict[str, str] = dataclasses.field(default_factory=dict)
    paged: bool = False
    fresh: bool = False

    def dump(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "since": _iso(self.since), "page": self.page,
             "seen": self.seen, "paged": self.paged, "fresh": self.fresh},
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str) -> _Position | None:
        try:
            data = as_dict(json.loads(text))
        except ValueError:
            return None
        since, page, seen = parse_time(data.get("since")), data.get("page"), data.get("seen")
        if data.get("v") != CURSOR_VERSION or since is None or not isinstance(page, int) \
                or page < 1 or not isinstance(seen, dict) \
                or not all(isinstance(v, str) for v in seen.values()):
            return None
        return cls(since, page, dict(seen), data.get("paged") is True, data.get("fresh") is True)


class ZammadAdapter(Adapter):
    """Zammad over its REST API v1."""

    type_name = "zammad"
    capabilities = Capabilities(drafts=True, webhook="zammad-hmac-sha1")
    settings_model = ZammadSettings
    simulator = "adapters.zammad.simulator:ZammadSimulator"

    settings: ZammadSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self.authorization = _authorization(self.settings.auth)
        self._states: dict[int, tuple[str, str]] = {}
        self._group_drafts: dict[int, tuple[bool, float]] = {}

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; a customer-only login is refused, since its notes would be public."""
        resp = self.http.request(
            "GET", f"{API_PATH}/users/me", endpoint="users_me", params={"expand": "true"}
        )
        user = json_object(resp.data, "users_me")
        user_id = numeric_id(user.get("id"))
        if user_id is None:
            raise MalformedResponse(f"{self.name} users_me: no user id", endpoint="users_me")
        roles = [r for r in user.get("roles") or [] if isinstance(r, str)]
        if roles and set(roles) == {"Customer"}:
            raise PermissionDenied(
                f"{self.name} users_me: user {user_id} is a customer; internal notes and "
                "shared drafts need an agent", status=resp.status, endpoint="users_me",
            )
        name = " ".join(
            str(user.get(key)) for key in ("firstname", "lastname") if user.get(key)
        ) or "unnamed"
        return f"user {user_id} ({name}), roles: {', '.join(roles) or 'unknown'}"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One search page under the cursor's bound: the tickets new or changed since reported.

        Search matches and sorts on the index, which lags; the answer shows the database. A hit
        older than the newest change seen minus ``overlap`` is surely indexed as it is, so the
        next page may start at it (a bound, immune to hits moving meanwhile). Within the overlap
        window nothing can be trusted that way, so a full page there is followed by the next
        page number, and the pass is repeated if that may have skipped a hit.
        """
        position = self._position(cursor, start_from)
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
                following = _Position(settled, 1, _recent(seen, settled), position.paged, fresh)
            else:
                following = _Position(position.since, position.page + 1, seen, True, fresh)
            return ChangePage(tickets, following.dump(), True)
        since = max(position.since, horizon)
        again = position.paged and fresh
        return ChangePage(tickets, _Position(since, 1, _recent(seen, since)).dump(), again)

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
        messages = [
            message for article in articles
            if (message := self._message(article, number)) is not None
        ]
        # Zammad lists oldest first; the sort only guards against a reordered answer.
        return sorted(messages, key=lambda m: (m.created_at, int(m.external_id)))

    def find_posted(self, ticket: Ticket, marker: str) -> str | None:
        """Our article (a note, or a draft an agent has sent), else our unsent shared draft."""
        for message in self.list_messages(ticket):
            if marker in message.body:
                return message.external_id
        draft = self._shared_draft(path_number(ticket.external_id))
        if draft is not None and marker in draft[1]:
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
        draft_id = numeric_id(as_dict(resp.data).get("shared_draft_id"))
        if draft_id is None:
            raise MalformedResponse(
                f"{self.name} shared_draft_update: ticket {number} answered without a draft id",
                status=resp.status, endpoint="shared_draft_update",
            )
        return Posted(f"{DRAFT_PREFIX}{draft_id}", "draft")

    def _post_note(self, number: str, html: str) -> Posted:
        """An internal note; ``internal`` is explicit because Zammad's default is public."""
        resp = self.http.request(
            "POST", f"{API_PATH}/ticket_articles", endpoint="article_create", idempotent=False,
            json_body={"ticket_id": int(number), "body": html, "content_type": "text/html",
                       "type": "note", "internal": True},
        )
        article_id = numeric_id(as_dict(resp.data).get("id"))
        if article_id is None:
            raise MalformedResponse(
                f"{self.name} article_create: ticket {number} answered without an article id",
                status=resp.status, endpoint="article_create",
            )
        return Posted(article_id, "note")

    # ----- backfill --------------------------------------------------------------------------
    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """The live walk again, from ``since``, with a cursor that lives only in this generator.

        Search sorts by change time, so the listing ends with the first page whose tickets all
        changed after ``until``: the window is about a ticket's latest change.
        """
        cursor: str | None = None
        for _ in range(MAX_BACKFILL_PAGES):
            page = self.poll_changes(cursor, since)
            inside = [
                ticket for ticket in page.tickets
                if until is None or ticket.updated_at is None or ticket.updated_at <= until
            ]
            yield inside
            if not page.more or (page.tickets and not inside):
                return
            cursor = page.cursor
        log.warning("%s: backfill listing stopped after %d pages", self.name, MAX_BACKFILL_PAGES)

    # ----- helpers ---------------------------------------------------------------------------
    def _position(self, cursor: str | None, start_from: datetime) -> _Position:
        start = start_from if start_from.tzinfo else start_from.replace(tzinfo=UTC)
        position = _Position.load(cursor) if cursor else _Position(start)
        if position is None:
            log.warning("%s: unreadable cursor; searching again from the start time", self.name)
            return _Position(start)
        return position

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
        if self.settings.group_ids and hit.raw.get("group_id") not in self.settings.group_ids:
            return None
        try:
            ticket = self._ticket(hit.raw)
        except MalformedResponse as exc:
            log.warning("%s: skipped ticket %s from search: %s", self.name, hit.ticket_id, exc)
            return None
        ticket = dataclasses.replace(ticket, tags=self._tags(hit.ticket_id))
        wanted = self.settings.tags
        return ticket if not wanted or any(tag in ticket.tags for tag in wanted) else None

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
        shown = raw.get("state")
        channel = raw.get("create_article_type")
        return Ticket(
            external_id=ticket_id,
            status=shown if isinstance(shown, str) else state_name,
            resolved=state_type in RESOLVED_STATE_TYPES,
            updated_at=parse_time(raw.get("updated_at")),
            subject=raw.get("title") if isinstance(raw.get("title"), str) else None,
            requester_id=numeric_id(raw.get("customer_id")),
            channel=channel if isinstance(channel, str) else None,
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
        tags = as_dict(resp.data).get("tags")
        return frozenset(t for t in tags if isinstance(t, str)) if isinstance(tags, list) \
            else frozenset()

    def _message(self, item: Any, number: str) -> Message | None:
        article = as_dict(item)
        article_id = numeric_id(article.get("id"))
        created_at = parse_time(article.get("created_at"))
        if article_id is None or created_at is None:
            log.warning("%s: skipped an article on ticket %s without id or time", self.name,
                        number)
            return None
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
        data = webhooks.json_object(body)
        return [webhooks.ticket_id(as_dict(data.get("ticket")).get("id"), "ticket.id")]


def _authorization(auth: ZammadTokenAuth | BearerTokenAuth) -> str:
    """The Authorization header; the secret is registered so logs mask it."""
    if isinstance(auth, BearerTokenAuth):
        token = auth.access_token.get_secret_value()
        register_secret(token)
        return f"Bearer {token}"
    token = auth.token.get_secret_value()
    register_secret(token)
    return f"Token token={token}"


def _recent(seen: dict[str, str], since: datetime) -> dict[str, str]:
    """Entries that the query from ``since`` can still return."""
    return {
        ticket_id: updated for ticket_id, updated in seen.items()
        if (when := parse_time(updated)) is not None and when >= since
    }


def _iso(when: datetime) -> str:
    """UTC with milliseconds, the precision Zammad and Elasticsearch keep."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _search_time(when: datetime) -> str:
    """A time inside a query_string: unescaped colons would end the field and break the query,
    which Zammad answers with no tickets at all."""
    return _iso(when).replace(":", "\\:")










def _body(article: dict[str, Any], role: Role) -> str:
    """Plain text of an article; a customer's quoted history and signature are cut off."""
    raw = article.get("body")
    if not isinstance(raw, str):
        return ""
    html = "html" in str(article.get("content_type") or "").lower()
    read = clean_body if role == Role.CUSTOMER else body_text
    return read(html=raw) if html else read(text=raw)
