"""An in-memory Freshdesk served over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths and JSON shapes of the endpoints the adapter uses, and the
behaviours that break naive clients: the ticket list without ``updated_since`` returns only
tickets created in the last 30 days, newest first; it pages by offset with a ``Link`` header and
refuses pages beyond a depth cap; spam and deleted tickets are left out of it; the first message
is the ticket's ``description``, not a conversation; a note is private unless ``private: false``
is sent; any API key is a Basic user name with any password; every answer carries the per-minute
``X-RateLimit-*`` headers, includes cost extra credits, and the ticket list has its own lower
per-minute cap.

Timestamps have Freshdesk's one-second resolution, so many tickets share an ``updated_at``. The
clock can be frozen (``freeze_time``) to make that happen on purpose. Authors are told apart only
through the agent view (``/api/v2/agents/{id}``, 404 for a contact), as conversations carry no
role; the ``deleted``/``spam`` views can ignore or refuse ``updated_since`` and ``order_by``,
which Freshdesk leaves undocumented (``removed_views``).

Documents followed (addresses and what each says: docs/adapters/freshdesk.md): Freshdesk's API
reference, developers.freshdesk.com/api/ (authentication, pagination, rate limit, tickets,
conversations, agents, ticket fields).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode

from adapters.signatures import DEFAULT_SECRET_HEADER, post_webhook
from adapters.simulation import SimRequest, SimResponse, Simulator
from adapters.text import html_to_text

STATUSES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}
CUSTOMER_LABELS = {2: "Being Processed", 3: "Awaiting your Reply",
                   4: "This ticket has been Resolved", 5: "This ticket has been Closed"}
SOURCES = (1, 2, 3, 7, 9, 10)  # email, portal, phone, chat, feedback widget, outbound email
REPLY, NOTE = 0, 2  # conversation source codes
NOMINAL_LIMIT = 400  # what X-RateLimit-Total says when no limit is enforced (Pro plan)
DEFAULT_WINDOW = timedelta(days=30)  # what the ticket list shows without updated_since
INCLUDES = {  # embeddable resources, and the credits each one adds to the call
    "tickets_list": (frozenset({"description", "requester", "stats"}), 2),
    "ticket_view": (frozenset({"conversations", "requester", "company", "stats"}), 1),
}
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


class FreshdeskSimulator(Simulator):
    """Freshdesk API v2, the subset the adapter uses, with the state tests inspect.

    ``rate_limit``: credits per minute for the account before 429 with ``Retry-After`` (None:
    unlimited). ``list_rate_limit``: the ticket list's own lower per-minute cap (None: none).
    ``max_page``: the deepest page the list endpoints serve (Freshdesk documents 300).
    ``ticket_fields``: False answers ``ticket_fields`` with 403, as for a restricted role.
    ``agents_readable``: False answers the agent view with 403 (a role without that right).
    ``removed_views``: how the ``deleted``/``spam`` list filters treat ``updated_since`` and
    ``order_by``, which Freshdesk does not document for them: "honoured" (like the plain list),
    "ignored" (the whole view, newest created first) or "refused" (400 when either is sent).
    A bot agent with the given API key exists from the start.
    """

    service = "freshdesk"
    routes = [
        ("GET", "/api/v2/agents/me", "agents_me"),
        ("GET", "/api/v2/agents/<int:agent_id>", "agent_view"),
        ("GET", "/api/v2/tickets", "tickets_list"),
        ("GET", "/api/v2/tickets/<int:ticket_id>", "ticket_view"),
        ("GET", "/api/v2/tickets/<int:ticket_id>/conversations", "ticket_conversations"),
        ("POST", "/api/v2/tickets/<int:ticket_id>/notes", "ticket_note"),
        ("GET", "/api/v2/ticket_fields", "ticket_fields"),
    ]

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        rate_limit: int | None = None,
        list_rate_limit: int | None = None,
        max_page: int = 300,
        ticket_fields: bool = True,
        agents_readable: bool = True,
        removed_views: str = "honoured",
        api_key: str = "fd-api-key",
        bot_email: str = "bot@example.com",
    ) -> None:
        super().__init__(port, host)
        self.rate_limit = rate_limit
        self.list_rate_limit = list_rate_limit
        self.max_page = max_page
        self.ticket_fields_enabled = ticket_fields
        if removed_views not in ("honoured", "ignored", "refused"):
            raise ValueError("removed_views must be 'honoured', 'ignored' or 'refused'")
        self.agents_readable = agents_readable
        self.removed_views = removed_views
        self._ids = itertools.count(1001)
        self._ticket_ids = itertools.count(1)
        self._status_ids = itertools.count(6)
        self._frozen: float | None = None
        self._window: deque[tuple[float, int]] = deque()  # (monotonic time, credits)
        self._list_window: deque[float] = deque()
        self.contacts: dict[int, _Contact] = {}
        self.tickets: dict[int, _Ticket] = {}
        self.custom_statuses: dict[int, str] = {}
        self.restricted: set[int] = set()
        self.corrupted: set[int] = set()
        self._api_keys: dict[str, int] = {}
        self.api_key = api_key
        self.bot_agent_id = self.add_agent("Uppzy Bot", bot_email, api_key=api_key)

    # ----- clock -----------------------------------------------------------------------------
    def freeze_time(self, at: datetime | None) -> None:
        """Stamp every change with ``at`` (None: the real clock again)."""
        with self.lock:
            self._frozen = None if at is None else at.timestamp()

    def _now(self) -> str:
        now = self._frozen if self._frozen is not None else time.time()
        return datetime.fromtimestamp(now, UTC).strftime(_TIME_FORMAT)

    # ----- Python API for tests and the sandbox ----------------------------------------------
    def add_contact(self, name: str, email: str | None = None) -> int:
        with self.lock:
            contact_id = next(self._ids)
            self.contacts[contact_id] = _Contact(contact_id, name, email, False, self._now())
        return contact_id

    def add_agent(self, name: str, email: str, *, api_key: str | None = None) -> int:
        with self.lock:
            agent_id = next(self._ids)
            self.contacts[agent_id] = _Contact(agent_id, name, email, True, self._now())
            if api_key:
                self._api_keys[api_key] = agent_id
        return agent_id

    def add_custom_status(self, name: str) -> int:
        """A custom status (ids from 6 on), listed among the status field's choices."""
        with self.lock:
            status_id = next(self._status_ids)
            self.custom_statuses[status_id] = name
        return status_id

    def create_ticket(
        self,
        requester_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        html: bool = False,
        source: int = 1,
        tags: tuple[str, ...] | list[str] = (),
        group_id: int | None = None,
        product_id: int | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """A new ticket; ``body`` becomes its description (HTML when ``html``).

        ``created_at`` backdates the ticket (creation and last update), e.g. beyond the list's
        30-day default window.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        with self.lock:
            self._contact(requester_id)
            ticket_id = next(self._ticket_ids)
            stamp = created_at.astimezone(UTC).strftime(_TIME_FORMAT) if created_at \
                else self._now()
            markup, text = (body, html_to_text(body)) if html else (_markup(body), body)
            self.tickets[ticket_id] = _Ticket(
                ticket_id, subject, markup, text, 2, source, requester_id, group_id, product_id,
                list(dict.fromkeys(tags)), stamp, stamp,
            )
        return ticket_id

    def add_conversation(
        self,
        ticket_id: int,
        user_id: int,
        body: str,
        *,
        private: bool = False,
        incoming: bool | None = None,
        source: int | None = None,
        html: bool = False,
    ) -> int:
        """A reply or note as someone else would add it (mail, agent UI, automation).

        ``incoming`` defaults to True for contacts, as for mail coming in from outside;
        ``source`` defaults to a note when ``private``, else a reply. A contact's public entry
        reopens a Resolved or Closed ticket, as Freshdesk does by default.
        """
        with self.lock:
            ticket = self._live(ticket_id)
            author = self._contact(user_id)
            if incoming is None:
                incoming = not author.agent
            entry = self._add(ticket, user_id, body, html=html, private=private,
                              incoming=incoming, source=NOTE if private else REPLY)
            if source is not None:
                entry.source = source
            if not private and not author.agent and ticket.status in (4, 5):
                ticket.status = 2
        return entry.id

    def customer_reply(self, ticket_id: int, body: str, *, html: bool = False) -> int:
        """The requester answers by mail."""
        with self.lock:
            requester = self.tickets[ticket_id].requester_id
        return self.add_conversation(ticket_id, requester, body, html=html)

    def set_status(self, ticket_id: int, status: int) -> None:
        with self.lock:
            if status not in STATUSES and status not in self.custom_statuses:
                raise ValueError(f"no status {status}")
            ticket = self._live(ticket_id)
            ticket.status = status
            ticket.updated_at = self._now()

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            ticket.updated_at = self._now()

    def mark_spam(self, ticket_id: int) -> None:
        """Spam: gone from the ticket list, still viewable with ``spam: true``."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.spam = True
            ticket.updated_at = self._now()

    def delete_ticket(self, ticket_id: int) -> None:
        """Moved to trash: gone from the ticket list, still viewable with ``deleted: true``."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.deleted = True
            ticket.updated_at = self._now()

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Freshdesk does: both tickets get the agent's private note, the source is
        closed and stays viewable."""
        with self.lock:
            source, target = self._live(source_id), self._live(target_id)
            for ticket, text in (
                (source, f"This ticket is closed and merged into ticket {target_id}"),
                (target, f"Ticket {source_id} was merged into this ticket"),
            ):
                self._add(ticket, agent_id, text, html=False, private=True, incoming=False,
                          source=NOTE)
            source.status = 5

    def restrict_ticket(self, ticket_id: int) -> None:
        """From now on the ticket is outside our agent's scope (e.g. another group): reading or
        writing it answers 403 and the ticket list leaves it out."""
        with self.lock:
            self.restricted.add(ticket_id)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """From now on the ticket's conversations start with an entry without a usable id,
        time or body, as a broken integration can leave behind."""
        with self.lock:
            self.corrupted.add(ticket_id)

    def purge_ticket(self, ticket_id: int) -> None:
        """Deleted forever: every endpoint answers 404 for it."""
        with self.lock:
            del self.tickets[ticket_id]

    def conversations(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's conversations as the API serves them, oldest first."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            return [self._conversation_json(ticket, c) for c in ticket.conversations]

    def notes_by(self, user_id: int) -> list[dict[str, Any]]:
        """Notes written by ``user_id`` on any ticket, each with its ``ticket_id``."""
        with self.lock:
            return [
                self._conversation_json(t, c) for t in self.tickets.values()
                for c in t.conversations if c.user_id == user_id and c.source == NOTE
            ]

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as the view endpoint serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id], description=True)

    def send_webhook(
        self, url: str, secret: str, ticket_id: int, *,
        header: str = DEFAULT_SECRET_HEADER,
    ) -> int:
        """Deliver what an automation rule configured as the docs say sends to ``url``: the body
        ``{"ticket_id": "<id>"}`` and the shared secret in ``header``. Returns the status."""
        with self.lock:
            self._live(ticket_id)
        body = json.dumps({"ticket_id": str(ticket_id)}).encode()
        return post_webhook(url, body, {header: secret})

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"api_key": self.api_key}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "contacts": [{"id": c.id, "name": c.name, "agent": c.agent}
                             for c in self.contacts.values()],
                "tickets": [{"id": t.id, "status": t.status, "conversations": len(t.conversations)}
                            for t in self.tickets.values()],
                "bot_notes": self.notes_by(self.bot_agent_id),
            }

    # ----- HTTP handlers ---------------------------------------------------------------------
    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-RateLimit-Total": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - self._used())),
                "X-RateLimit-Used-CurrentRequest": str(_credits(endpoint, request))}

    def handle_agents_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "agents_me")
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, _agent_json(user))

    def handle_agent_view(self, request: SimRequest, agent_id: int) -> SimResponse:
        """An agent by its id, which is its user id (the ``user_id`` of its conversations);
        a contact's id, or no user at all, answers 404."""
        with self.lock:
            user = self._guard(request, "agent_view")
            if isinstance(user, SimResponse):
                return user
            if not self.agents_readable:
                return SimResponse(403, dict(ACCESS_DENIED))
            agent = self.contacts.get(agent_id)
            if agent is None or not agent.agent:
                return SimResponse(404)
            return SimResponse(200, _agent_json(agent))

    def handle_tickets_list(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "tickets_list")
            if isinstance(user, SimResponse):
                return user
            paging = self._paging(request)
            if isinstance(paging, SimResponse):
                return paging
            rows = self._listed(request)
            if isinstance(rows, SimResponse):
                return rows
            page, per_page = paging
            chosen = rows[(page - 1) * per_page: page * per_page]
            description = "description" in _includes(request)
            response = SimResponse(200, [self._ticket_json(t, description) for t in chosen])
            if len(rows) > page * per_page and page < self.max_page:
                query = {k: v[0] for k, v in request.query.items()}
                link = f"{self.url}/api/v2/tickets?{urlencode({**query, 'page': page + 1})}"
                response.headers["Link"] = f'<{link}>; rel="next"'
            return response

    def handle_ticket_view(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_view")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            body = self._ticket_json(ticket, description=True)
            if "conversations" in _includes(request):  # the first ten, as Freshdesk embeds
                body["conversations"] = [
                    self._conversation_json(ticket, c) for c in ticket.conversations[:10]
                ]
            return SimResponse(200, body)

    def handle_ticket_conversations(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_conversations")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            paging = self._paging(request)
            if isinstance(paging, SimResponse):
                return paging
            page, per_page = paging
            listing = [self._conversation_json(ticket, c) for c in ticket.conversations]
            if ticket.id in self.corrupted:
                listing.insert(0, {**(listing[0] if listing else {}), "id": None,
                                   "body": 42, "body_text": None, "created_at": None})
            response = SimResponse(200, listing[(page - 1) * per_page: page * per_page])
            if len(listing) > page * per_page:
                link = (f"{self.url}/api/v2/tickets/{ticket_id}/conversations?"
                        + urlencode({"per_page": per_page, "page": page + 1}))
                response.headers["Link"] = f'<{link}>; rel="next"'
            return response

    def handle_ticket_note(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_note")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            payload = request.json()
            if not isinstance(payload, dict):
                return _validation("body", "It should be a JSON object")
            invalid = _invalid_note(payload)
            if invalid is not None:
                return invalid
            author = payload.get("user_id", user.id)
            if not isinstance(author, int) or author not in self.contacts:
                return _validation("user_id", "There is no contact matching the given user_id")
            entry = self._add(
                ticket, author, payload["body"], html=True,
                private=payload.get("private", True),  # Freshdesk's default: private
                incoming=payload.get("incoming", False), source=NOTE,
            )
            return SimResponse(201, {
                **self._conversation_json(ticket, entry),
                "notified_to": list(payload.get("notify_emails") or []),
            })

    def handle_ticket_fields(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_fields")
            if isinstance(user, SimResponse):
                return user
            if not self.ticket_fields_enabled:
                return SimResponse(403, dict(ACCESS_DENIED))
            choices = {str(k): [v, CUSTOMER_LABELS[k]] for k, v in STATUSES.items()}
            choices.update({str(k): [v, v] for k, v in self.custom_statuses.items()})
            return SimResponse(200, [
                {"id": 1, "name": "requester", "label": "Search a requester",
                 "type": "default_requester", "default": True, "position": 1},
                {"id": 2, "name": "subject", "label": "Subject", "type": "default_subject",
                 "default": True, "position": 2},
                {"id": 3, "name": "status", "label": "Status", "description": "Ticket status",
                 "type": "default_status", "default": True, "position": 3,
                 "label_for_customers": "Status", "choices": choices},
            ])

    # ----- internals (callers hold self.lock) ------------------------------------------------
    def _contact(self, user_id: int) -> _Contact:
        contact = self.contacts.get(user_id)
        if contact is None:
            raise KeyError(f"no contact or agent {user_id}")
        return contact

    def _reachable(self, ticket_id: int) -> _Ticket | SimResponse:
        """The ticket, or Freshdesk's answer for one that is gone (404) or out of scope (403)."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return SimResponse(404)
        if ticket_id in self.restricted:
            return SimResponse(403, dict(ACCESS_DENIED))
        return ticket

    def _live(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets[ticket_id]
        if ticket.deleted:
            raise KeyError(f"ticket {ticket_id} is deleted")
        return ticket

    def _add(
        self, ticket: _Ticket, user_id: int, body: str, *, html: bool, private: bool,
        incoming: bool, source: int,
    ) -> _Conversation:
        markup, text = (body, html_to_text(body)) if html else (_markup(body), body)
        entry = _Conversation(next(self._ids), user_id, markup, text, incoming, private, source,
                              self._now())
        ticket.conversations.append(entry)
        ticket.updated_at = entry.created_at  # any activity counts as an update
        return entry

    def _used(self) -> int:
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= 60:
            self._window.popleft()
        return sum(credits for _, credits in self._window)

    def _admit(self, endpoint: str, request: SimRequest) -> SimResponse | None:
        """Count the request's credits against the per-minute windows; 429 once one is full."""
        now = time.monotonic()
        credits = _credits(endpoint, request)
        used = self._used()
        while self._list_window and now - self._list_window[0] >= 60:
            self._list_window.popleft()
        oldest: float | None = None
        if self.rate_limit is not None and used + credits > self.rate_limit and self._window:
            oldest = self._window[0][0]
        elif (endpoint == "tickets_list" and self.list_rate_limit is not None
              and len(self._list_window) >= self.list_rate_limit):
            oldest = self._list_window[0]
        if oldest is not None:
            response = SimResponse(429, {"message": "You have exceeded the limit of requests "
                                                    "per minute"})
            response.headers["Retry-After"] = str(max(1, math.ceil(oldest + 60 - now)))
            return response
        self._window.append((now, credits))
        if endpoint == "tickets_list":
            self._list_window.append(now)
        return None

    def _user(self, request: SimRequest) -> _Contact | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        key, _, _password = decoded.partition(":")  # any password: Freshdesk ignores it
        agent_id = self._api_keys.get(key)
        return self.contacts.get(agent_id) if agent_id is not None else None

    def _guard(self, request: SimRequest, endpoint: str) -> _Contact | SimResponse:
        """The authenticated agent, or the 429/401 answer that ends the request."""
        refused = self._admit(endpoint, request)
        if refused is not None:
            return refused
        return self._user(request) or _unauthenticated()

    def _paging(self, request: SimRequest) -> tuple[int, int] | SimResponse:
        per_page, page = request.arg("per_page", "30") or "", request.arg("page", "1") or ""
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return _validation("per_page", "It should be a Positive Integer less than or equal "
                                           "to 100")
        if not page.isdigit() or int(page) < 1:
            return _validation("page", "It should be a Positive Integer")
        if int(page) > self.max_page:
            return _validation("page", f"It should be less than or equal to {self.max_page}")
        return int(page), int(per_page)

    def _listed(self, request: SimRequest) -> list[_Ticket] | SimResponse:
        """The tickets the list answers with, in the requested order."""
        view = request.arg("filter")
        if view not in (None, "spam", "deleted"):
            return _validation("filter", "It should be one of these values: 'spam,deleted'")
        rows = [t for t in self.tickets.values()
                if (view == "spam") == t.spam and (view == "deleted") == t.deleted
                and t.id not in self.restricted]
        if view is not None and self.removed_views != "honoured":
            extra = {"updated_since", "order_by", "order_type"} & set(request.query)
            if extra and self.removed_views == "refused":
                return _validation(sorted(extra)[0], "It is not allowed with filter")
            return sorted(rows, key=lambda t: (t.created_at, t.id), reverse=True)
        since = request.arg("updated_since")
        if since is None:
            cutoff = (datetime.strptime(self._now(), _TIME_FORMAT).replace(tzinfo=UTC)
                      - DEFAULT_WINDOW).strftime(_TIME_FORMAT)
            rows = [t for t in rows if t.created_at >= cutoff]
        else:
            parsed = _parse_since(since)
            if parsed is None:
                return _validation("updated_since", "It should be in the 'valid date' format")
            rows = [t for t in rows if t.updated_at >= parsed.strftime(_TIME_FORMAT)]
        order_by = request.arg("order_by", "created_at")
        if order_by not in ("created_at", "updated_at", "status"):
            return _validation("order_by", "It should be one of these values: "
                                           "'created_at,updated_at,status'")
        order_type = request.arg("order_type", "desc")
        if order_type not in ("asc", "desc"):
            return _validation("order_type", "It should be one of these values: 'asc,desc'")
        rows.sort(key=lambda t: (getattr(t, order_by), t.id), reverse=order_type == "desc")
        return rows

    def _ticket_json(self, ticket: _Ticket, description: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": ticket.id, "subject": ticket.subject, "status": ticket.status,
            "priority": 1, "source": ticket.source, "type": None,
            "requester_id": ticket.requester_id, "responder_id": None,
            "group_id": ticket.group_id, "company_id": None, "product_id": ticket.product_id,
            "email_config_id": None, "tags": list(ticket.tags), "cc_emails": [],
            "fwd_emails": [], "reply_cc_emails": [], "to_emails": None, "spam": ticket.spam,
            "fr_escalated": False, "is_escalated": False, "custom_fields": {},
            "due_by": ticket.created_at, "fr_due_by": ticket.created_at,
            "created_at": ticket.created_at, "updated_at": ticket.updated_at,
        }
        if ticket.deleted:
            body["deleted"] = True
        if description:
            body.update(description=ticket.html, description_text=ticket.text, attachments=[])
        return body

    def _conversation_json(self, ticket: _Ticket, entry: _Conversation) -> dict[str, Any]:
        author = self.contacts.get(entry.user_id)
        email = author.email if author else None
        return {
            "id": entry.id, "body": entry.html, "body_text": entry.text,
            "incoming": entry.incoming, "private": entry.private, "user_id": entry.user_id,
            "support_email": None if entry.incoming else "support@example.freshdesk.com",
            "source": entry.source, "category": 2, "ticket_id": ticket.id,
            "from_email": email if entry.incoming else None, "to_emails": [],
            "cc_emails": [], "bcc_emails": None, "attachments": [],
            "created_at": entry.created_at, "updated_at": entry.created_at,
        }

    # ----- the play API of ``connector sandbox`` (see Simulator.seed_ticket) -------------------
    # customer_reply is the one above.
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        return self.create_ticket(self.add_contact(customer, self.play_email(customer)), body,
                                  subject=subject)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        return self.add_conversation(ticket_id, self.play_agent(self.add_agent), body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, 4)


def _agent_json(agent: _Contact) -> dict[str, Any]:
    return {
        "id": agent.id, "available": True, "occasional": False, "ticket_scope": 1,
        "signature": None, "group_ids": [], "role_ids": [], "skill_ids": [],
        "type": "support_agent", "created_at": agent.created_at, "updated_at": agent.created_at,
        "contact": {"name": agent.name, "email": agent.email, "active": True,
                    "language": "en", "time_zone": "UTC"},
    }


def _includes(request: SimRequest) -> set[str]:
    return {part for part in (request.arg("include") or "").split(",") if part}


def _credits(endpoint: str, request: SimRequest) -> int:
    """One credit per call plus what each embedded resource adds: two on the ticket list (as
    its reference says), one on the ticket view (not documented there: a guess)."""
    embeddable, each = INCLUDES.get(endpoint, (frozenset(), 0))
    return 1 + each * len(_includes(request) & embeddable)


def _invalid_note(payload: dict[str, Any]) -> SimResponse | None:
    """Freshdesk's 400 for a note it refuses, or None."""
    body = payload.get("body")
    if not isinstance(body, str) or not body.strip():
        return _validation("body", "It should be a/an String and can't be blank")
    for flag in ("private", "incoming"):
        if flag in payload and not isinstance(payload[flag], bool):
            return _validation(flag, "It should be a/an Boolean")
    emails = payload.get("notify_emails", [])
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        return _validation("notify_emails", "It should be a/an Array of String")
    return None
