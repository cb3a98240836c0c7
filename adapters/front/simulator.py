"""A Front Core API simulator that enforces what the adapter relies on (docs/adapters/front.md).

It refuses what Front refuses: a request without ``Authorization: Bearer <token>`` (401), a
``limit`` above the endpoint's maximum (15 for events, 100 elsewhere), an events query whose
times are not seconds or whose types Front does not know, a page token from another listing, a
draft reply without ``body`` or ``channel_id`` or with an unknown channel, author or mode (400).
Unknown conversations answer 404, merged ones 301, restricted ones 403. Every answer carries the
``x-ratelimit-*`` headers, and with ``rpm`` set a 429 with ``Retry-After`` enforces the limit.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections import deque
from typing import Any, ClassVar

from adapters.front.sim_records import (
    EVENT_TYPES,
    SimChannel,
    SimConversation,
    SimEntry,
    SimEvent,
    SimTeammate,
    base36,
)
from adapters.simulation import SimRequest, SimResponse, Simulator

EVENTS_LIMIT, LIST_LIMIT = 15, 100
RATE_WINDOW = 60.0


def front_error(status: int, title: str, message: str) -> SimResponse:
    return SimResponse(status, {"_error": {"status": status, "title": title,
                                           "message": message}})


class FrontSimulator(Simulator):
    """One Front company: a connector teammate (a person's seat), a human agent, a rule bot."""

    service = "front"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/me", "me"),
        ("GET", "/teammates/<teammate_id>", "teammate"),
        ("GET", "/channels/<channel_id>", "channel"),
        ("GET", "/events", "events"),
        ("GET", "/conversations/<conversation_id>", "conversation"),
        ("GET", "/conversations/<conversation_id>/messages", "messages"),
        ("GET", "/conversations/<conversation_id>/comments", "comments"),
        ("GET", "/conversations/<conversation_id>/drafts", "drafts"),
        ("POST", "/conversations/<conversation_id>/drafts", "draft_create"),
    ]

    def __init__(self, port: int = 0, *, api_token: str = "front-api-token-3e9",
                 rpm: int | None = None, events_limit: int = EVENTS_LIMIT) -> None:
        super().__init__(port)
        self.api_token = api_token
        self.rpm = rpm
        self.events_limit = events_limit
        self._ids = itertools.count(1000)
        self._last_stamp = 0.0
        self._recent: deque[float] = deque()
        self._tokens: dict[str, tuple[str, dict[str, Any], int]] = {}
        self.teammates: dict[str, SimTeammate] = {}
        self.channels: dict[str, SimChannel] = {}
        self.conversations: dict[str, SimConversation] = {}
        self.events: list[SimEvent] = []
        self.bot = self.add_teammate("Uppzy", "Assistant", "uppzy@example.com")
        self.agent = self.add_teammate("Sam", "Agent", "sam.agent@example.com")
        self.rule = self.add_teammate("Auto-reply", "rule", "rule@example.com", kind="rule")
        self.channel = self.add_channel("Support", "support@example.com")

    # ----- setting up ------------------------------------------------------------------------
    def add_teammate(self, first: str, last: str, email: str, *, kind: str = "user") -> str:
        teammate = SimTeammate(self._new_id("tea"), email, first, last, kind)
        with self.lock:
            self.teammates[teammate.id] = teammate
        return teammate.id

    def add_channel(self, name: str, address: str) -> str:
        channel = SimChannel(self._new_id("cha"), name, address)
        with self.lock:
            self.channels[channel.id] = channel
        return channel.id

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"token": self.api_token},
                "teammate_id": self.bot, "channel_id": self.channel}

    # ----- people acting (used by tests, the conformance driver and the play API) ------------
    def create_conversation(self, customer: str, body: str, *, subject: str = "Help",
                            html: bool = False, kind: str = "email") -> str:
        with self.lock:
            at = self._stamp()
            handle = self.play_email(customer) if kind == "email" else f"chat:{customer}"
            conversation = SimConversation(self._new_id("cnv"), subject, handle, customer, at, at)
            self.conversations[conversation.id] = conversation
            self._add(conversation, "message", body, html=html, is_inbound=True, type=kind,
                      event="inbound", source="inboxes")
            return conversation.id

    def customer_writes(self, conversation_id: str, body: str, *, html: bool = False) -> str:
        """An inbound message; like Front, it brings an archived conversation back to open."""
        with self.lock:
            conversation = self._live(conversation_id)
            if conversation.status == "archived":
                conversation.status = "unassigned"
            kind = next((e.type for e in conversation.entries if e.is_inbound), "email")
            return self._add(conversation, "message", body, html=html, is_inbound=True,
                             type=kind, event="inbound", source="inboxes")

    def teammate_replies(self, conversation_id: str, teammate_id: str, body: str) -> str:
        """An outbound reply sent by a teammate (a person, or a bot such as a rule)."""
        with self.lock:
            author = self.teammates[teammate_id]
            return self._add(self._live(conversation_id), "message", body, html=False,
                             author=author, event="out_reply", source=self._source(author))

    def comment(self, conversation_id: str, teammate_id: str, body: str) -> str:
        with self.lock:
            author = self.teammates[teammate_id]
            return self._add(self._live(conversation_id), "comment", body, html=False,
                             author=author, event="comment", source=self._source(author))

    def set_status(self, conversation_id: str, status: str, event: str) -> None:
        """``archive``/``reopen``/``trash``/``restore``: the status and the event Front emits."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.status = status
            if conversation.status_category is not None and status != "archived":
                conversation.status_id, conversation.status_category = "sts_open", "open"
            self._event(conversation, event, "teammate")

    def set_ticket_status(self, conversation_id: str, status_id: str, category: str) -> None:
        """Front ticketing: a (custom) status in one of the categories open/waiting/resolved."""
        with self.lock:
            conversation = self._live(conversation_id)
            conversation.status_id, conversation.status_category = status_id, category
            self._event(conversation, "ticket_status_update", "teammate")

    def merge(self, conversation_id: str, into_id: str) -> None:
        """The entries move to ``into_id`` keeping their ids; the old id answers 301."""
        with self.lock:
            old, target = self._live(conversation_id), self._live(into_id)
            target.entries.extend(old.entries)
            old.entries, old.merged_into = [], into_id
            self._event(target, "conversations_merged", "teammate")

    def restrict(self, conversation_id: str) -> None:
        with self.lock:
            self.conversations[conversation_id].restricted = True

    def corrupt(self, conversation_id: str) -> None:
        """The conversation's first message loses its id."""
        with self.lock:
            self.conversations[conversation_id].entries[0].corrupt = True

    def entries(self, conversation_id: str) -> list[SimEntry]:
        with self.lock:
            return list(self.conversations[conversation_id].entries)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"conversations": {
                c.id: {"status": c.status, "status_category": c.status_category,
                       "drafts": [{"id": e.id, "mode": e.draft_mode, "author": e.author.id
                                   if e.author else None} for e in c.entries if e.draft_mode]}
                for c in self.conversations.values()}}

    # ----- the play API ----------------------------------------------------------------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        return _number(self.create_conversation(customer, body, subject=subject))

    def customer_reply(self, ticket_id: int, body: str) -> int:
        return _number(self.customer_writes(self._play_id(ticket_id), body))

    def agent_reply(self, ticket_id: int, body: str) -> int:
        return _number(self.teammate_replies(self._play_id(ticket_id), self.agent, body))

    def resolve(self, ticket_id: int) -> None:
        self.set_status(self._play_id(ticket_id), "archived", "archive")

    # ----- routes ----------------------------------------------------------------------------
    def handle_me(self, request: SimRequest) -> SimResponse:
        return self._denied(request) or SimResponse(200, {
            "_links": {"self": f"{self.url}/me"}, "id": "cmp_sim", "name": "Simulated Company"})

    def handle_teammate(self, request: SimRequest, teammate_id: str) -> SimResponse:
        if denied := self._denied(request):
            return denied
        teammate = self.teammates.get(teammate_id)
        if teammate is None:
            return front_error(404, "Not found", f"Unknown teammate {teammate_id}")
        return SimResponse(200, teammate.json(self.url))

    def handle_channel(self, request: SimRequest, channel_id: str) -> SimResponse:
        if denied := self._denied(request):
            return denied
        channel = self.channels.get(channel_id)
        if channel is None:
            return front_error(404, "Not found", f"Unknown channel {channel_id}")
        return SimResponse(200, channel.json(self.url))

    def handle_events(self, request: SimRequest) -> SimResponse:
        if denied := self._denied(request):
            return denied
        query = self._events_query(request)
        if isinstance(query, SimResponse):
            return query
        return self._page(request, "/events", query, self.events_limit, self._event_rows)

    def handle_conversation(self, request: SimRequest, conversation_id: str) -> SimResponse:
        found = self._readable(request, conversation_id)
        return found if isinstance(found, SimResponse) else SimResponse(200, found.json(self.url))

    def handle_messages(self, request: SimRequest, conversation_id: str) -> SimResponse:
        return self._entry_page(request, conversation_id, "messages", "message", False)

    def handle_comments(self, request: SimRequest, conversation_id: str) -> SimResponse:
        return self._entry_page(request, conversation_id, "comments", "comment", False)

    def handle_drafts(self, request: SimRequest, conversation_id: str) -> SimResponse:
        return self._entry_page(request, conversation_id, "drafts", "message", True)

    def handle_draft_create(self, request: SimRequest, conversation_id: str) -> SimResponse:
        found = self._readable(request, conversation_id)
        if isinstance(found, SimResponse):
            return found
        spec = request.json()
        problem = self._draft_problem(spec)
        if problem:
            return front_error(400, "Bad request", problem)
        author = self.teammates[spec.get("author_id") or self.bot]
        with self.lock:
            entry = SimEntry(self._new_id("msg"), "message", self._stamp(), spec["body"],
                             author=author, draft_mode=spec.get("mode") or "private",
                             text=None)
            found.entries.append(entry)
        return SimResponse(200, entry.json(self.url, found))

    # ----- the vendor's headers and limits ---------------------------------------------------
    def vendor_headers(self, endpoint: str, request: SimRequest, response: SimResponse
                       ) -> dict[str, str]:
        limit = self.rpm or 50
        now = time.time()
        return {"x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": str(max(0, limit - len(self._recent))),
                "x-ratelimit-reset": str(math.ceil(now + RATE_WINDOW))}

    def _denied(self, request: SimRequest) -> SimResponse | None:
        """401 unless the request carries the company's token as a bearer token; then, with
        ``rpm`` set, 429 when the minute's budget is spent."""
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return front_error(401, "Unauthorized", "Invalid or missing API token")
        if self.rpm is None:
            return None
        now = time.monotonic()
        with self.lock:
            while self._recent and now - self._recent[0] >= RATE_WINDOW:
                self._recent.popleft()
            if len(self._recent) >= self.rpm:
                wait = math.ceil(self._recent[0] + RATE_WINDOW - now)
                response = front_error(429, "Too many requests", "Rate limit exceeded")
                response.headers["Retry-After"] = str(max(1, wait))
                return response
            self._recent.append(now)
        return None

    # ----- helpers ---------------------------------------------------------------------------
    def _readable(self, request: SimRequest, conversation_id: str
                  ) -> SimConversation | SimResponse:
        if denied := self._denied(request):
            return denied
        with self.lock:
            conversation = self.conversations.get(conversation_id)
        if conversation is None:
            return front_error(404, "Not found", f"Unknown conversation {conversation_id}")
        if conversation.merged_into is not None:
            target = f"{self.url}/conversations/{conversation.merged_into}"
            return SimResponse(301, {"_links": {"self": target}}, {"Location": target})
        if conversation.restricted:
            return front_error(403, "Forbidden", "You do not have access to this conversation")
        return conversation

    def _entry_page(self, request: SimRequest, conversation_id: str, path: str, kind: str,
                    drafts: bool) -> SimResponse:
        found = self._readable(request, conversation_id)
        if isinstance(found, SimResponse):
            return found

        def rows(_: dict[str, Any]) -> list[dict[str, Any]]:
            with self.lock:
                return [e.json(self.url, found) for e in found.listed(kind, drafts)]

        return self._page(request, f"/conversations/{conversation_id}/{path}", {},
                          LIST_LIMIT, rows)

    def _page(self, request: SimRequest, path: str, query: dict[str, Any], most: int,
              rows: Any) -> SimResponse:
        """One page of a listing. A page token remembers the listing, its filter and where
        the next page starts; a token from another listing is refused."""
        raw_limit = request.arg("limit", str(min(25, most)))
        if not (raw_limit or "").isdigit() or not 1 <= int(raw_limit) <= most:
            return front_error(400, "Bad request", f"limit must be between 1 and {most}")
        limit, offset = int(raw_limit), 0
        token = request.arg("page_token")
        if token:
            known = self._tokens.get(token)
            if known is None or known[0] != path:
                return front_error(400, "Bad request", "Invalid page token")
            _, query, offset = known
        selected = rows(query)
        next_link = None
        if offset + limit < len(selected):
            following = secrets.token_hex(12)
            with self.lock:
                self._tokens[following] = (path, query, offset + limit)
            next_link = f"{self.url}{path}?page_token={following}"
        return SimResponse(200, {"_pagination": {"next": next_link},
                                 "_links": {"self": f"{self.url}{path}"},
                                 "_results": selected[offset:offset + limit]})

    def _events_query(self, request: SimRequest) -> dict[str, Any] | SimResponse:
        """The events filter, checked as Front documents it: times in seconds (at most three
        decimals), known event types, ``sort_by`` only ``created_at``."""
        query: dict[str, Any] = {"types": request.query.get("q[types][]", []),
                                 "order": request.arg("sort_order", "desc")}
        for bound in ("after", "before"):
            value = request.arg(f"q[{bound}]")
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                return front_error(400, "Bad request", f"q[{bound}] must be a timestamp")
            if seconds > 1e11 or len(value.partition(".")[2]) > 3:
                return front_error(400, "Bad request",
                                   f"q[{bound}] must be seconds with up to 3 decimals")
            query[bound] = seconds
        unknown = [t for t in query["types"] if t not in EVENT_TYPES]
        if unknown or query["order"] not in ("asc", "desc") or \
                request.arg("sort_by", "created_at") != "created_at":
            return front_error(400, "Bad request", "invalid q[types], sort_by or sort_order")
        return query

    def _event_rows(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        with self.lock:
            chosen = [e for e in self.events
                      if (not query["types"] or e.type in query["types"])
                      and e.emitted_at > query.get("after", -1.0)
                      and e.emitted_at < query.get("before", math.inf)]
            chosen.sort(key=lambda e: e.emitted_at, reverse=query["order"] == "desc")
            return [e.json(self.url, self._current(e.conversation_id),
                           self.teammates.get(e.source)) for e in chosen]

    def _current(self, conversation_id: str) -> SimConversation:
        """The conversation an event shows: a merged one's events show where it went."""
        conversation = self.conversations[conversation_id]
        while conversation.merged_into is not None:
            conversation = self.conversations[conversation.merged_into]
        return conversation

    def _draft_problem(self, spec: Any) -> str | None:
        if not isinstance(spec, dict) or not isinstance(spec.get("body"), str):
            return "body is required"
        if spec.get("channel_id") not in self.channels:
            return "channel_id is required and must name a channel"
        if spec.get("author_id") is not None and spec["author_id"] not in self.teammates:
            return "author_id must name a teammate"
        if spec.get("mode", "private") not in ("private", "shared"):
            return "mode must be private or shared"
        return None

    def _add(self, conversation: SimConversation, kind: str, body: str, *, html: bool,
             event: str, source: str, **fields: Any) -> str:
        entry = SimEntry.written(self._new_id("msg" if kind == "message" else "com"), kind,
                                 self._stamp(), body, html=html, **fields)
        conversation.entries.append(entry)
        self._event(conversation, event, source, entry)
        return entry.id

    def _event(self, conversation: SimConversation, kind: str, source: str,
               target: SimEntry | None = None) -> None:
        at = self._stamp()
        conversation.updated_at = at
        self.events.append(SimEvent(self._new_id("evt"), kind, at, conversation.id, source,
                                    target))

    def _source(self, teammate: SimTeammate) -> str:
        """Events name the teammate who acted (its id), or ``rule`` for a rule's bot."""
        return "rule" if teammate.type == "rule" else teammate.id

    def _live(self, conversation_id: str) -> SimConversation:
        conversation = self.conversations[conversation_id]
        if conversation.merged_into is not None:
            raise ValueError(f"{conversation_id} was merged")
        return conversation

    def _play_id(self, number: int) -> str:
        conversation_id = f"cnv_{base36(number)}"
        if conversation_id not in self.conversations:
            raise KeyError(number)
        return conversation_id

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{base36(next(self._ids))}"

    def _stamp(self) -> float:
        """Now in seconds to the millisecond, always after the previous stamp, so events are
        apart and ordered as they happened."""
        with self.lock:
            self._last_stamp = max(round(time.time(), 3), round(self._last_stamp + 0.001, 3))
            return self._last_stamp


def _number(front_id: str) -> int:
    """The number behind an id, for the play API, which speaks in numbers."""
    return int(front_id.partition("_")[2], 36)
