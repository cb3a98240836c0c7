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

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, Literal

from pydantic import Field, SecretStr

from adapters import signatures
from adapters.auth import StaticCredentials, basic_authorization
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
from adapters.freshdesk import positions
from adapters.freshdesk.authors import Authors
from adapters.freshdesk.positions import FeedCursor, Position
from adapters.paging import follow_pages
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
from connector.core.durations import Duration
from connector.core.errors import BadRequest, MalformedResponse, NotFound, PermissionDenied
from connector.core.http import CallObserver, Response

log = logging.getLogger(__name__)

TICKETS_PATH = "/api/v2/tickets"
STANDARD_STATUSES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
RESOLVED_STATUS_IDS = frozenset({4, 5})
SOURCES = {1: "email", 2: "portal", 3: "phone", 7: "chat", 9: "feedback_widget",
           10: "outbound_email"}
OUTBOUND_EMAIL = 10  # the ticket was opened by an agent: its description is the agent's words
MAX_CONVERSATION_PAGES = 50
STATUS_REFRESH = 600.0  # seconds before an unknown status id may trigger another ticket_fields read
_DIGITS = re.compile(r"[0-9]+")
_NEXT_LINK = re.compile(r'<[^>]*>\s*;\s*rel="?next"?')


class FreshdeskAuth(StaticCredentials):
    """An agent's API key; Freshdesk takes it as the Basic user name with any password."""

    api_key: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return basic_authorization(self.api_key, "X")


class FreshdeskSettings(FilteredSettings):
    """One Freshdesk account. ``url`` is the account root, e.g. ``https://acme.freshdesk.com``."""

    api_suffix = "/api/v2"
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
    product_ids: list[int] = Field(default_factory=list)
    webhook_secret_header: str = Field(
        default=signatures.DEFAULT_SECRET_HEADER, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="The custom header in which the automation rule sends webhook_secret.",
    )


class FreshdeskAdapter(ReplayAdapter):
    """Freshdesk over its REST API v2.

    Backfill replays the ticket list, which is ordered by ``updated_at``.
    """

    type_name = "freshdesk"
    capabilities = Capabilities(drafts=False, webhook="shared-secret-header")
    settings_model = FreshdeskSettings
    simulator = "adapters.freshdesk.simulator:FreshdeskSimulator"
    feed_order = FeedOrder.LATEST_CHANGE

    settings: FreshdeskSettings

    def __init__(self, settings: AdapterSettings, *, observer: CallObserver | None = None) -> None:
        super().__init__(settings, observer=observer)
        self._status_names: dict[int, str] | None = None
        self._statuses_loaded_at = 0.0
        self._system_users = frozenset(str(user) for user in self.settings.system_user_ids)
        self._authors = Authors(self.http, self.name)
        self._plain_removed_views = False

    # ----- reads -----------------------------------------------------------------------------
    def check(self) -> str:
        """Who we are; an agent whose scope is not global would miss tickets, so it is shown."""
        agent = self.read_account("/api/v2/agents/me", "agents_me")
        name = as_dict(agent.record.get("contact")).get("name") or "unnamed"
        scope = {1: "global", 2: "group", 3: "restricted"}.get(agent.record.get("ticket_scope"),
                                                               "?")
        return f"agent {agent.id} ({name}; ticket scope {scope})"

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        """One page of the ticket list, or of the trash/spam sweep that follows it now and then."""
        state = FeedCursor.resume(cursor, FeedCursor.start(whole_second(start_from)), self.name)
        if state.sweep.pending:
            return self._sweep_page(state)
        return self._feed_page(state)

    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self._view(ticket_id))

    def list_messages(self, ticket: Ticket) -> list[Message]:
        raw = self._view(ticket.external_id)
        current = self._ticket(raw)
        messages = [self._description(raw, current), *self.read_entries(
            self._conversations(current.external_id),
            f"a conversation on ticket {current.external_id}",
            lambda entry, entry_id, at: self._message(entry, entry_id, at, current),
        )]
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
        return Posted(self.answered_id(resp, "ticket_note", number, "note"), "note")

    def replay_page(
        self, position: Position | None, since: datetime
    ) -> tuple[list[Ticket], Position | None]:
        """A step of the ticket list alone: trash and spam are left out, as backfill looks
        for customers still waiting."""
        tickets, after, more, _ = self._step(position or Position(whole_second(since)))
        return tickets, after if more else None

    # ----- change feed -----------------------------------------------------------------------
    def _feed_page(self, state: FeedCursor) -> ChangePage:
        """A step of the ticket list; once it has no more for now, a sweep round when due."""
        tickets, after, more, now = self._step(state.feed)
        sweep = state.sweep
        if not more and (now - sweep.at).total_seconds() >= self.settings.removed_check_interval:
            sweep, more = sweep.begin(now), True
        return ChangePage(tickets, FeedCursor(after, sweep).dump(), more)

    def _step(self, feed: Position) -> tuple[list[Ticket], Position, bool, datetime]:
        """One fresh query from ``feed``: its new tickets, the position after it, whether more
        pages exist now, and the server's clock."""
        resp, rows = self._list_page(feed.since, feed.page)
        tickets = [ticket for ticket, raw in rows
                   if not (ticket.updated_at == feed.since and ticket.external_id in feed.seen)
                   and self._wanted(raw)]
        more = _full(resp, self.settings.page_size)
        now = server_time(resp.headers)
        after = feed.after([t for t, _ in rows], more, now)
        return tickets, self._past_the_cap(feed) if after is feed else after, more, now

    def _sweep_page(self, state: FeedCursor) -> ChangePage:
        """One page of trash or spam: tickets removed there since the last round, as resolved.

        The ticket list never shows them again, so without this their Uppzy sessions would
        stay open. Whether these views honour ``updated_since`` and ``order_by`` is not
        documented, so nothing here relies on it: every page of the view is read, in whatever
        order it comes, and the tickets are kept by their own ``updated_at``.
        """
        sweep = state.sweep
        view, anchor = sweep.pending[0], sweep.anchors[sweep.pending[0]]
        resp, rows = self._removed_page(view, anchor, sweep.page)
        tickets = [replace(t, resolved=True) for t, raw in rows
                   if t.updated_at and t.updated_at >= anchor and self._wanted(raw)]
        after = sweep.after(_full(resp, self.settings.page_size))
        return ChangePage(tickets, FeedCursor(state.feed, after).dump(), bool(after.pending))

    def _removed_page(
        self, view: str, since: datetime, page: int
    ) -> tuple[Response, list[tuple[Ticket, dict[str, Any]]]]:
        """A page of a removed view, with ``updated_since`` to reach tickets created more than
        30 days ago, unless Freshdesk refused that combination once (then without it)."""
        if not self._plain_removed_views:
            try:
                return self._list_page(since, page, view)
            except BadRequest:
                log.warning("%s: Freshdesk refuses updated_since on filter=%s; trash and spam "
                            "are read without it from now on", self.name, view)
                self._plain_removed_views = True
        return self._list_page(None, page, view)

    def _list_page(
        self, since: datetime | None, page: int, view: str | None = None
    ) -> tuple[Response, list[tuple[Ticket, dict[str, Any]]]]:
        """A page of the ticket list, or of a removed ``view`` (which is not asked for an
        order: none is documented for it)."""
        params: dict[str, Any] = {"per_page": self.settings.page_size, "page": page}
        if since is not None:
            params["updated_since"] = iso_seconds(since)
        if view is None:
            params.update(order_by="updated_at", order_type="asc")
        else:
            params["filter"] = view
        resp = self.http.request("GET", TICKETS_PATH, endpoint="tickets_list", params=params)
        if not isinstance(resp.data, list):
            raise MalformedResponse(f"{self.name} tickets_list: answer is not a list",
                                    status=resp.status, endpoint="tickets_list")
        return resp, [row for index, item in enumerate(resp.data)
                      if (row := self._list_item(index, item)) is not None]

    def _past_the_cap(self, position: Position) -> Position:
        log.warning(
            "%s: more than %d pages of tickets updated at %s; continuing one second later, "
            "tickets of that second beyond the cap are not reported", self.name,
            positions.MAX_PAGE, iso_seconds(position.since),
        )
        return Position(position.since + timedelta(seconds=1))

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
        return self.settings.wants(raw, product_id=self.settings.product_ids)

    # ----- tickets and statuses --------------------------------------------------------------
    def _view(self, ticket_id: str) -> dict[str, Any]:
        number = path_number(ticket_id)
        resp = self.http.request("GET", f"{TICKETS_PATH}/{number}", endpoint="ticket_view")
        return json_object(resp.data, "ticket_view")

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        ticket_id = record_id(raw, f"{self.name}: ticket")
        status = raw.get("status")
        status_id = status if isinstance(status, int) and not isinstance(status, bool) else None
        source = raw.get("source")
        return Ticket(
            external_id=ticket_id,
            status=self._status_name(status_id),
            resolved=raw.get("deleted") is True or raw.get("spam") is True
            or self._resolved(status_id),
            updated_at=parse_time(raw.get("updated_at")),
            subject=text_or_none(raw.get("subject")),
            requester_id=numeric_id(raw.get("requester_id")),
            channel=SOURCES.get(source, f"source {source}") if isinstance(source, int) else None,
            tags=text_set(raw.get("tags")),
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

        def read(page: int) -> tuple[list[Any], int | None]:
            resp = self.http.request("GET", path, endpoint="ticket_conversations", params={
                "per_page": self.settings.page_size, "page": page,
            })
            if not isinstance(resp.data, list):
                raise MalformedResponse(
                    f"{self.name} ticket_conversations: answer is not a list",
                    status=resp.status, endpoint="ticket_conversations",
                )
            return resp.data, page + 1 if _has_next(resp) else None

        pages = follow_pages(read, 1, limit=MAX_CONVERSATION_PAGES, noun="conversations",
                             what=f"{self.name} ticket_conversations: ticket {number}",
                             endpoint="ticket_conversations")
        return list(chain.from_iterable(pages))

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

    def _message(
        self, entry: dict[str, Any], entry_id: str, created_at: datetime, ticket: Ticket
    ) -> Message:
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
        """Freshdesk has no author role on a conversation, so the author is looked up as an
        agent. Automations and integrations post as ordinary agents, so only the configured
        ``system_user_ids`` tell them apart.
        """
        if user_id is not None and user_id in self._system_users:
            return Role.SYSTEM
        agent = self._authors.is_agent(user_id) if user_id is not None else None
        if agent is not None:
            return Role.AGENT if agent else Role.CUSTOMER
        if entry.get("incoming") is True or (user_id is not None and user_id == requester_id):
            return Role.CUSTOMER
        return Role.AGENT

    # ----- webhooks --------------------------------------------------------------------------
    def webhook_scheme(self) -> signatures.WebhookScheme:
        """Freshdesk cannot sign: the rule sends the secret in the configured header."""
        return signatures.SharedSecretHeader(self.settings.webhook_secret_header)

    def webhook_ticket_ids(self, headers: Mapping[str, str], body: bytes) -> list[str]:
        """The body is whatever the automation rule says: ``{"ticket_id": "{{ticket.id}}"}``
        (the rule's "simple" content wraps its fields in ``freshdesk_webhook``)."""
        data = signatures.json_object(body)
        if "ticket_id" not in data and isinstance(data.get("freshdesk_webhook"), dict):
            data = data["freshdesk_webhook"]
        return [signatures.ticket_id(data.get("ticket_id"), "ticket_id")]


def _full(resp: Response, page_size: int) -> bool:
    """More pages exist: Freshdesk's ``Link`` header says so, or the page is full without one
    (the next query tells)."""
    items = resp.data if isinstance(resp.data, list) else []
    return _has_next(resp) or len(items) >= page_size


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
