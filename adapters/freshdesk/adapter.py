"""Freshdesk: the ticket list re-anchored on ``updated_at`` for changes, private notes as drafts.

Freshdesk has no draft API, so our answer goes in as a private note an agent turns into a reply.
The change feed is ``GET /api/v2/tickets`` ordered by ``updated_at`` ascending, always with an
explicit ``updated_since`` (without it Freshdesk silently returns only tickets created in the last
30 days). That list pages by offset, which is capped in depth and shifts under concurrent updates
(a ticket updated mid-walk moves to the end and the ticket behind it slides onto a page already
read). So every page starts a fresh query from the newest ``updated_at`` seen so far, and the
tickets of that second already reported are skipped; only a run of more than one page of tickets
sharing one second is walked with ``page``. ``updated_at`` has one-second resolution, so the
newest few seconds are read again until no change can land in them any more. Spam and trashed
tickets leave that list silently, so every ``removed_check_interval`` the feed also reads the
``deleted`` and ``spam`` views once and reports what was removed there as resolved.

The first message of a ticket is not a conversation entry but the ticket's ``description``; it
gets the synthetic id ``desc:<ticket>``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import takewhile
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
from adapters.text import body_text, clean_body, text_to_html
from connector.durations import Duration
from connector.errors import MalformedResponse, NotFound, PermissionDenied
from connector.http import CallObserver, Response
from connector.redact import register_secret

log = logging.getLogger(__name__)

TICKETS_PATH = "/api/v2/tickets"
STANDARD_STATUSES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
RESOLVED_STATUS_IDS = frozenset({4, 5})
SOURCES = {1: "email", 2: "portal", 3: "phone", 7: "chat", 9: "feedback_widget",
           10: "outbound_email"}
OUTBOUND_EMAIL = 10  # the ticket was opened by an agent: its description is the agent's words
MAX_PAGE = 300  # Freshdesk's documented page-depth cap on list endpoints
MAX_CONVERSATION_PAGES = 50
MAX_BACKFILL_PAGES = 10_000  # a bound for the loop, far beyond any account's ticket list
SETTLE = 5.0  # seconds after which no further change can land in a past updated_at second
STATUS_REFRESH = 600.0  # seconds before an unknown status id may trigger another ticket_fields read
CURSOR_VERSION = 2
REMOVED_VIEWS = ("deleted", "spam")  # list filters for tickets the plain list leaves out
_DIGITS = re.compile(r"[0-9]+")
_NEXT_LINK = re.compile(r'<[^>]*>\s*;\s*rel="?next"?')
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class FreshdeskAuth(BaseModel):
    """An agent's API key; Freshdesk takes it as the Basic user name with any password."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(min_length=1)


class FreshdeskSettings(AdapterSettings):
    """One Freshdesk account. ``url`` is the account root, e.g. ``https://acme.freshdesk.com``.

    The filters narrow which tickets the engine sees; a ticket must match every filter that is
    set (``tags``: at least one of the listed tags).
    """

    type: Literal["freshdesk"]
    auth: FreshdeskAuth
    page_size: int = Field(
        default=100, ge=1, le=100, description="Tickets and conversations per page (max 100).",
    )
    resolved_statuses: list[str] = Field(
        default_factory=list,
        description="Names of custom statuses that count as resolved, besides Resolved/Closed.",
    )
    system_user_ids: list[int] = Field(
        default_factory=list,
        description="Users whose messages are automation output (bots, integrations).",
    )
    removed_check_interval: Duration = Field(
        default=300.0, ge=0,
        description="How often trash and spam are checked for removed tickets (0: every poll).",
    )
    group_ids: list[int] = Field(default_factory=list)
    product_ids: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    webhook_secret_header: str = Field(
        default=webhooks.DEFAULT_SECRET_HEADER, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The custom header in which the automation rule sends webhook_secret.",
    )

    @field_validator("url")
    @classmethod
    def _account_root(cls, value: str) -> str:
        """Accept the API base people copy from Freshdesk's docs; we add ``/api/v2`` ourselves."""
        return value.removesuffix("/api/v2")


@dataclass(frozen=True)
class _Position:
    """Where the ticket list resumes: a fresh query from ``since``, at ``page`` of it.

    ``seen`` holds tickets already reported whose ``updated_at`` is ``since`` itself, read after
    that second had settled: the next query returns them again (``updated_since`` includes its
    second) and they are skipped. A ticket read while its second was young is not kept there,
    because a further change within the same second leaves ``updated_at`` unchanged.
    ``newest`` is the newest ``updated_at`` read on the pages of this query so far.
    """

    since: datetime
    page: int = 1
    seen: frozenset[str] = frozenset()
    newest: datetime | None = None


@dataclass(frozen=True)
class _Sweep:
    """The look into trash and spam, which the ticket list leaves out.

    ``at`` is when the last round began (server clock), ``anchors`` the ``updated_since`` of each
    view, ``pending`` the views still to read in the current round.
    """

    at: datetime
    anchors: dict[str, datetime]
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Cursor:
    feed: _Position
    sweep: _Sweep

    @classmethod
    def start(cls, when: datetime) -> _Cursor:
        return cls(_Position(when), _Sweep(when, dict.fromkeys(REMOVED_VIEWS, when)))

    def encode(self) -> str:
        feed, sweep = self.feed, self.sweep
        return json.dumps({
            "v": CURSOR_VERSION, "since": _text(feed.since), "page": feed.page,
            "newest": _text(feed.newest or feed.since), "seen": sorted(feed.seen, key=int),
            "swept": _text(sweep.at), "removed": {k: _text(v) for k, v in sweep.anchors.items()},
            "sweep": list(sweep.pending),
        }, separators=(",", ":"))

    @classmethod
    def decode(cls, cursor: str) -> _Cursor | None:
        try:
            data = json.loads(cursor)
            if data["v"] != CURSOR_VERSION:
                return None
            page, seen, pending = data["page"], data["seen"], tuple(data["sweep"])
            times = [parse_time(data[key]) for key in ("since", "newest", "swept")]
            anchors = {view: parse_time(data["removed"][view]) for view in REMOVED_VIEWS}
        except (ValueError, TypeError, KeyError):
            return None
        valid = (
            isinstance(page, int) and page >= 1 and isinstance(seen, list)
            and all(isinstance(i, str) and _DIGITS.fullmatch(i) for i in seen)
            and set(pending) <= set(REMOVED_VIEWS)
        )
        since, newest, swept = times
        if not valid or since is None or newest is None or swept is None:
            return None
        if any(anchor is None for anchor in anchors.values()):
            return None
        return cls(_Position(since, page, frozenset(seen), newest),
                   _Sweep(swept, {k: v for k, v in anchors.items() if v}, pending))


class FreshdeskAdapter(Adapter):
    """Freshdesk over its REST API v2."""

    type_name = "freshdesk"
    capabilities = Capabilities(drafts=False, webhook="shared-secret-header")
    settings_model = FreshdeskSettings
    simulator = "adapters.freshdesk.simulator:FreshdeskSimulator"

    settings: FreshdeskSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self.authorization = _authorization(self.settings.auth)
        self._status_names: dict[int, str] | None = None
        self._statuses_loaded_at = 0.0
        self._system_users = frozenset(str(user) for user in self.settings.system_user_ids)

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; an agent whose scope is not global would miss tickets, so it is shown."""
        resp = self.http.request("GET", "/api/v2/agents/me", endpoint="agents_me")
        agent = json_object(resp.data, "agents_me")
        agent_id = numeric_id(agent.get("id"))
        if agent_id is None:
            raise MalformedResponse(f"{self.name} agents_me: no agent id", endpoint="agents_me")
        name = as_dict(agent.get("contact")).get("name") or "unnamed"
        scope = {1: "global", 2: "group", 3: "restricted"}.get(agent.get("ticket_scope"), "?")
        return f"agent {agent_id} ({name}; ticket scope {scope})"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of the ticket list, or of the trash/spam sweep that follows it now and then."""
        state = _Cursor.decode(cursor) if cursor else None
        if state is None:
            if cursor:
                log.warning("%s: unreadable cursor, starting from start_from", self.name)
            state = _Cursor.start(_whole_second(start_from))
        if state.sweep.pending:
            return self._sweep_page(state)
        return self._feed_page(state)

    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self._view(ticket_id))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        raw = self._view(ticket.external_id)
        current = self._ticket(raw)
        messages = [self._description(raw, current)]
        messages.extend(
            message for item in self._conversations(current.external_id)
            if (message := self._message(item, current)) is not None
        )
        # Freshdesk lists conversations oldest first; a stable sort keeps that order on ties.
        return sorted(messages, key=lambda m: m.created_at)

    # ----- writes ----------------------------------------------------------------------------
    def post_draft(self, ticket_id: str, text: str) -> Posted:
        """A private note; ``private`` is explicit although it is Freshdesk's default."""
        number = path_number(ticket_id)
        resp = self.http.request(
            "POST", f"{TICKETS_PATH}/{number}/notes", endpoint="ticket_note",
            json_body={"body": text_to_html(text), "private": True}, idempotent=False,
        )
        note_id = numeric_id(as_dict(resp.data).get("id"))
        if note_id is None:
            raise MalformedResponse(
                f"{self.name} ticket_note: note added to ticket {number} but no id in the answer",
                status=resp.status, endpoint="ticket_note",
            )
        return Posted(note_id, "note")

    def list_tickets(self, since: datetime, until: datetime | None) -> Iterator[list[Ticket]]:
        """The ticket list again, from ``since``, with a position that lives only here.

        The list is ordered by ``updated_at``, so the listing ends at the first ticket changed
        after ``until``: the window is about a ticket's latest change. Trash and spam are left
        out, as backfill looks for customers still waiting.
        """
        feed = _Position(_whole_second(since))
        for _ in range(MAX_BACKFILL_PAGES):
            tickets, feed, more, _ = self._step(feed)
            inside = list(takewhile(
                lambda t: until is None or t.updated_at is None or t.updated_at <= until, tickets,
            ))
            yield inside
            if len(inside) < len(tickets) or not more:
                return
        log.warning("%s: backfill listing stopped after %d pages", self.name, MAX_BACKFILL_PAGES)

    # ----- change feed -----------------------------------------------------------------------
    def _feed_page(self, state: _Cursor) -> ChangePage:
        """A step of the ticket list; once it has no more for now, a sweep round when due."""
        tickets, after, more, now = self._step(state.feed)
        sweep = state.sweep
        interval = self.settings.removed_check_interval
        if not more and (now - sweep.at).total_seconds() >= interval:
            sweep, more = replace(sweep, at=now, pending=REMOVED_VIEWS), True
        return ChangePage(tickets, _Cursor(after, sweep).encode(), more)

    def _step(self, feed: _Position) -> tuple[list[Ticket], _Position, bool, datetime]:
        """One fresh query from ``feed``: its new tickets, the position after it, whether more
        pages exist now, and the server's clock."""
        resp, rows = self._list_page(feed.since, feed.page)
        tickets = [ticket for ticket, raw in rows
                   if not (ticket.updated_at == feed.since and ticket.external_id in feed.seen)
                   and self._wanted(raw)]
        more = _full(resp, self.settings.page_size)
        now = _server_time(resp)
        after = _next(feed, [t for t, _ in rows], more, now)
        return tickets, self._past_the_cap(feed) if after is feed else after, more, now

    def _sweep_page(self, state: _Cursor) -> ChangePage:
        """One page of trash or spam: tickets removed there since the last round, as resolved.

        The ticket list never shows them again, so without this their Uppzy sessions would
        stay open. Each view keeps its own anchor; a full page moves it and reads on. The next
        round starts ``SETTLE`` seconds before this one began, so a ticket removed just then may
        be reported twice, never not at all.
        """
        sweep = state.sweep
        view, anchor = sweep.pending[0], sweep.anchors[sweep.pending[0]]
        resp, rows = self._list_page(anchor, 1, view)
        fresh = [(t, raw) for t, raw in rows if t.updated_at and t.updated_at >= anchor]
        tickets = [replace(t, resolved=True) for t, raw in fresh if self._wanted(raw)]
        newest = max((t.updated_at for t, _ in fresh if t.updated_at), default=anchor)
        if _full(resp, self.settings.page_size) and newest > anchor:
            anchors, pending = {**sweep.anchors, view: newest}, sweep.pending
        else:
            settled = sweep.at.replace(microsecond=0) - timedelta(seconds=SETTLE)
            anchors, pending = {**sweep.anchors, view: max(anchor, settled)}, sweep.pending[1:]
        after = _Cursor(state.feed, replace(sweep, anchors=anchors, pending=pending))
        return ChangePage(tickets, after.encode(), bool(pending))

    def _list_page(
        self, since: datetime, page: int, view: str | None = None
    ) -> tuple[Response, list[tuple[Ticket, dict[str, Any]]]]:
        params: dict[str, Any] = {
            "updated_since": _text(since), "order_by": "updated_at", "order_type": "asc",
            "per_page": self.settings.page_size, "page": page,
        }
        if view is not None:
            params["filter"] = view
        resp = self.http.request("GET", TICKETS_PATH, endpoint="tickets_list", params=params)
        if not isinstance(resp.data, list):
            raise MalformedResponse(f"{self.name} tickets_list: answer is not a list",
                                    status=resp.status, endpoint="tickets_list")
        return resp, [row for index, item in enumerate(resp.data)
                      if (row := self._list_item(index, item)) is not None]

    def _past_the_cap(self, position: _Position) -> _Position:
        log.warning(
            "%s: more than %d pages of tickets updated at %s; continuing one second later, "
            "tickets of that second beyond the cap are not reported", self.name, MAX_PAGE,
            _text(position.since),
        )
        return _Position(position.since + timedelta(seconds=1))

    def _list_item(self, index: int, item: Any) -> tuple[Ticket, dict[str, Any]] | None:
        """One list entry, or None when it is unusable (the page goes on)."""
        raw = as_dict(item)
        try:
            ticket = self._ticket(raw)
        except MalformedResponse:
            log.warning("%s: skipped list item %d: not a ticket with an id", self.name, index)
            return None
        if ticket.updated_at is None:
            log.warning("%s: skipped ticket %s: no readable updated_at", self.name,
                        ticket.external_id)
            return None
        return ticket, raw

    def _wanted(self, raw: dict[str, Any]) -> bool:
        settings = self.settings
        if settings.group_ids and raw.get("group_id") not in settings.group_ids:
            return False
        if settings.product_ids and raw.get("product_id") not in settings.product_ids:
            return False
        tags = raw.get("tags")
        return not settings.tags or (
            isinstance(tags, list) and any(tag in tags for tag in settings.tags)
        )

    # ----- tickets and statuses --------------------------------------------------------------
    def _view(self, ticket_id: str) -> dict[str, Any]:
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"{TICKETS_PATH}/{number}", endpoint="ticket_view")
        return json_object(resp.data, "ticket_view")

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        ticket_id = numeric_id(raw.get("id"))
        if ticket_id is None:
            raise MalformedResponse(f"{self.name}: ticket without an id")
        status = raw.get("status")
        status_id = status if isinstance(status, int) and not isinstance(status, bool) else None
        source = raw.get("source")
        tags = raw.get("tags")
        return Ticket(
            external_id=ticket_id,
            status=self._status_name(status_id),
            resolved=raw.get("deleted") is True or raw.get("spam") is True
            or self._resolved(status_id),
            updated_at=parse_time(raw.get("updated_at")),
            subject=raw.get("subject") if isinstance(raw.get("subject"), str) else None,
            requester_id=numeric_id(raw.get("requester_id")),
            channel=SOURCES.get(source, f"source {source}") if isinstance(source, int) else None,
            tags=frozenset(t for t in tags if isinstance(t, str))
            if isinstance(tags, list) else frozenset(),
            url=f"{self.settings.url}/a/tickets/{ticket_id}",
        )

    def _resolved(self, status_id: int | None) -> bool:
        if status_id is None:
            return False
        if status_id in RESOLVED_STATUS_IDS:
            return True
        if not self.settings.resolved_statuses or status_id in STANDARD_STATUSES:
            return False
        wanted = {name.casefold() for name in self.settings.resolved_statuses}
        return self._status_names_for(status_id).get(status_id, "").casefold() in wanted

    def _status_name(self, status_id: int | None) -> str:
        if status_id is None:
            return "unknown"
        if status_id in STANDARD_STATUSES:
            return STANDARD_STATUSES[status_id]
        return self._status_names_for(status_id).get(status_id, f"status {status_id}")

    def _status_names_for(self, status_id: int) -> dict[int, str]:
        """Status id -> agent label from the status field's choices, loaded when first needed.

        A status created after the last load is unknown; the fields are read again for it, but
        not more often than every ``STATUS_REFRESH`` seconds.
        """
        stale = time.monotonic() - self._statuses_loaded_at > STATUS_REFRESH
        if self._status_names is None or (status_id not in self._status_names and stale):
            self._status_names = self._load_status_names()
            self._statuses_loaded_at = time.monotonic()
        return self._status_names

    def _load_status_names(self) -> dict[int, str]:
        try:
            resp = self.http.request("GET", "/api/v2/ticket_fields", endpoint="ticket_fields")
        except (NotFound, PermissionDenied) as exc:
            log.warning("%s: cannot read ticket fields (%s); custom statuses are shown by "
                        "number and never count as resolved", self.name, type(exc).__name__)
            return {}
        fields = resp.data if isinstance(resp.data, list) else []
        status_field = next((as_dict(f) for f in fields if as_dict(f).get("name") == "status"), {})
        names = {
            int(key): str(labels[0])
            for key, labels in as_dict(status_field.get("choices")).items()
            if _DIGITS.fullmatch(str(key)) and isinstance(labels, list) and labels
        }
        known = {name.casefold() for name in names.values()}
        for wanted in self.settings.resolved_statuses:
            if wanted.casefold() not in known:
                log.warning("%s: resolved_statuses names %r, which is not a status of this "
                            "account", self.name, wanted)
        return names

    # ----- conversations ---------------------------------------------------------------------
    def _conversations(self, number: str) -> list[Any]:
        path = f"{TICKETS_PATH}/{number}/conversations"
        items: list[Any] = []
        for page in range(1, MAX_CONVERSATION_PAGES + 1):
            resp = self.http.request("GET", path, endpoint="ticket_conversations", params={
                "per_page": self.settings.page_size, "page": page,
            })
            if not isinstance(resp.data, list):
                raise MalformedResponse(
                    f"{self.name} ticket_conversations: answer is not a list",
                    status=resp.status, endpoint="ticket_conversations",
                )
            items.extend(resp.data)
            if not _has_next(resp):
                return items
        raise MalformedResponse(
            f"{self.name} ticket_conversations: ticket {number} has more than "
            f"{MAX_CONVERSATION_PAGES} pages of conversations", endpoint="ticket_conversations",
        )

    def _description(self, raw: dict[str, Any], ticket: Ticket) -> Message:
        """The ticket's own text, the first message, written by the requester (or an agent)."""
        created_at = parse_time(raw.get("created_at")) or ticket.updated_at
        if created_at is None:
            raise MalformedResponse(f"{self.name}: ticket {ticket.external_id} has no created_at")
        role = Role.AGENT if raw.get("source") == OUTBOUND_EMAIL else Role.CUSTOMER
        return Message(
            external_id=f"desc:{ticket.external_id}",
            ticket_id=ticket.external_id,
            created_at=created_at,
            role=role,
            public=True,
            body=_body(raw.get("description"), raw.get("description_text"), role),
            author_id=ticket.requester_id if role is Role.CUSTOMER else None,
        )

    def _message(self, item: Any, ticket: Ticket) -> Message | None:
        entry = as_dict(item)
        entry_id = numeric_id(entry.get("id"))
        created_at = parse_time(entry.get("created_at"))
        if entry_id is None or created_at is None:
            log.warning("%s: skipped a conversation on ticket %s without id or time", self.name,
                        ticket.external_id)
            return None
        user_id = numeric_id(entry.get("user_id"))
        role = self._role(entry, user_id, ticket.requester_id)
        return Message(
            external_id=entry_id,
            ticket_id=ticket.external_id,
            created_at=created_at,
            role=role,
            public=entry.get("private") is not True,
            body=_body(entry.get("body"), entry.get("body_text"), role),
            author_id=user_id,
        )

    def _role(self, entry: dict[str, Any], user_id: str | None, requester_id: str | None) -> Role:
        """Freshdesk has no author role on a conversation: ``incoming`` marks mail from outside.

        Automations and integrations post as ordinary agents, so only the configured
        ``system_user_ids`` tell them apart.
        """
        if user_id is not None and user_id in self._system_users:
            return Role.SYSTEM
        if entry.get("incoming") is True or (user_id is not None and user_id == requester_id):
            return Role.CUSTOMER
        return Role.AGENT

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_scheme(self) -> webhooks.WebhookScheme:
        """Freshdesk cannot sign: the rule sends the secret in the configured header."""
        return webhooks.SharedSecretHeader(self.settings.webhook_secret_header)

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """The body is whatever the automation rule says: ``{"ticket_id": "{{ticket.id}}"}``
        (the rule's "simple" content wraps its fields in ``freshdesk_webhook``)."""
        data = webhooks.json_object(body)
        if "ticket_id" not in data and isinstance(data.get("freshdesk_webhook"), dict):
            data = data["freshdesk_webhook"]
        return [webhooks.ticket_id(data.get("ticket_id"), "ticket_id")]


def _next(position: _Position, tickets: list[Ticket], more: bool, now: datetime) -> _Position:
    """The position after a page (``position`` itself at the depth cap).

    The next query starts at the page's newest ``updated_at``, but never later than ``SETTLE``
    seconds before the server's clock: a change can still land in a young second without moving
    ``updated_at``, so young seconds are read again (an overlap) and only the anchor's settled
    second is de-duplicated. When the anchor cannot move, a fresh query would return the same
    page, so the walk goes one page deeper instead; once that run of pages ends it stays on its
    last page, or starts over while what it read is young (earlier pages may have changed).
    """
    newest = max((t.updated_at for t in tickets if t.updated_at is not None),
                 default=position.since)
    settled_until = now.replace(microsecond=0) - timedelta(seconds=SETTLE)
    since = max(position.since, min(newest, settled_until))
    at_since = {t.external_id for t in tickets if t.updated_at == since}
    if since > position.since:
        return _Position(since, 1, frozenset(at_since))
    seen = position.seen | at_since if since <= settled_until else position.seen
    read = max(newest, position.newest or since)
    if more:
        return replace(position, page=position.page + 1, seen=seen, newest=read) \
            if position.page < MAX_PAGE else position
    if read <= settled_until:
        return _Position(since, position.page, seen, read)
    return _Position(since, 1, seen)


def _full(resp: Response, page_size: int) -> bool:
    """More pages exist: Freshdesk's ``Link`` header says so, or the page is full without one
    (the next query tells)."""
    items = resp.data if isinstance(resp.data, list) else []
    return _has_next(resp) or len(items) >= page_size


def _text(when: datetime) -> str:
    return when.strftime(_TIME_FORMAT)


def _server_time(resp: Response) -> datetime:
    """When the server answered, by its ``Date`` header (our clock if it sent none)."""
    try:
        when = email.utils.parsedate_to_datetime(resp.headers.get("Date") or "")
    except (TypeError, ValueError):
        return datetime.now(UTC)
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _authorization(auth: FreshdeskAuth) -> str:
    """The Authorization header; the key and its encoded form are registered so logs mask them."""
    key = auth.api_key.get_secret_value()
    encoded = base64.b64encode(f"{key}:X".encode()).decode()
    register_secret(key)
    register_secret(encoded)
    return f"Basic {encoded}"


def _whole_second(when: datetime) -> datetime:
    """``updated_since`` has second resolution; rounding down never skips a change."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)










def _has_next(resp: Response) -> bool:
    """Freshdesk announces a further page only in the ``Link`` header."""
    return bool(_NEXT_LINK.search(resp.headers.get("Link") or ""))


def _body(html: Any, text: Any, role: Role) -> str:
    """Plain text; a customer's without the quoted history and signature mail replies carry.

    The HTML wins over Freshdesk's own ``body_text``: converting it ourselves keeps link targets
    and list structure, which the vendor's text version drops.
    """
    markup = html if isinstance(html, str) and html.strip() else None
    plain = text if markup is None and isinstance(text, str) else None
    return clean_body(plain, markup) if role is Role.CUSTOMER else body_text(plain, markup)
