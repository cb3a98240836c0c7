"""A Front Core API simulator that enforces what the adapter relies on (docs/adapters/front.md).

It refuses what Front refuses: a request without ``Authorization: Bearer <token>`` (401), a
``limit`` above the endpoint's maximum (15 for events, 100 elsewhere), an events query whose
times are not seconds or whose types Front does not know, a page token from another listing, a
draft reply without ``body`` or ``channel_id`` or with an unknown channel, author or mode (400).
Unknown conversations answer 404, merged ones 301, restricted ones 403. Every answer carries the
``x-ratelimit-*`` headers; 429s with ``Retry-After`` come from the base's faults.
"""

from __future__ import annotations

import itertools
import math
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.simulation import SimRequest, SimResponse, Simulator, TicketRef
from adapters.text import html_to_text, text_to_html

EVENTS_LIMIT, LIST_LIMIT = 15, 100
RATE_WINDOW, RATE_LIMIT = 60.0, 50
EVENT_TYPES = frozenset([  # spec: EventResponse.type
    "assign", "unassign", "archive", "reopen", "trash", "restore", "reminder", "comment",
    "mention", "inbound", "outbound", "out_reply", "move", "forward", "tag", "untag",
    "sending_error", "message_bounce_error", "conversations_merged", "link_added",
    "link_removed", "custom_field_updated", "macro_triggered", "topic_identified",
    "ticket_status_update"])
_DIGITS = string.digits + string.ascii_lowercase


def base36(number: int) -> str:
    """Front's ids end in a base-36 number (``cnv_55c8c149``)."""
    text = _DIGITS[number % 36]
    return base36(number // 36) + text if number >= 36 else text


@dataclass
class SimTeammate:
    id: str
    email: str
    first_name: str
    last_name: str
    type: str = "user"  # "user", or a bot type: "rule", "macro", "ai", ...
    is_blocked: bool = False

    def json(self, base: str) -> dict[str, Any]:
        return {"_links": {"self": f"{base}/teammates/{self.id}"}, "id": self.id,
                "email": self.email, "username": self.email.split("@")[0],
                "first_name": self.first_name, "last_name": self.last_name, "is_admin": False,
                "is_available": True, "is_blocked": self.is_blocked, "type": self.type,
                "custom_fields": {}}


@dataclass
class SimEntry:
    """A message (sent, received or a draft) or a comment of one conversation."""

    id: str
    kind: str  # "message" or "comment"
    created_at: float
    body: str  # HTML for messages, plain text for comments
    author: SimTeammate | None = None
    is_inbound: bool = False
    type: str = "email"
    text: str | None = None
    draft_mode: str | None = None
    corrupt: bool = False

    def json(self, base: str, conversation: SimConversation) -> dict[str, Any]:
        author = self.author.json(base) if self.author else None
        if self.kind == "comment":
            data: dict[str, Any] = {"_links": {"self": f"{base}/comments/{self.id}"},
                                    "id": self.id, "author": author, "body": self.body,
                                    "posted_at": self.created_at, "attachments": [],
                                    "is_pinned": False}
        else:
            data = self._message_json(base, conversation, author)
        if self.corrupt:
            data.pop("id")
        return data

    def _message_json(self, base: str, conversation: SimConversation,
                      author: dict[str, Any] | None) -> dict[str, Any]:
        role = "from" if self.is_inbound else "to"
        data: dict[str, Any] = {
            "_links": {"self": f"{base}/messages/{self.id}",
                       "related": {"conversation": f"{base}/conversations/{conversation.id}"}},
            "id": self.id, "message_uid": self.id[4:], "type": self.type,
            "is_inbound": self.is_inbound, "draft_mode": self.draft_mode, "error_type": None,
            "version": f"v-{self.id}", "created_at": self.created_at,
            "subject": conversation.subject, "blurb": (self.text or "")[:80], "author": author,
            "recipients": [{"name": conversation.customer_name, "handle": conversation.handle,
                            "role": role}],
            "body": self.body, "attachments": [], "metadata": {},
        }
        if self.text is not None and self.type == "email":
            data["text"] = self.text
        return data


@dataclass
class SimConversation:
    id: str
    subject: str
    handle: str
    customer_name: str
    created_at: float
    updated_at: float
    status: str = "unassigned"
    status_id: str | None = None
    status_category: str | None = None
    entries: list[SimEntry] = field(default_factory=list)
    merged_into: str | None = None
    restricted: bool = False

    def json(self, base: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "_links": {"self": f"{base}/conversations/{self.id}"},
            "id": self.id, "type": "conversation", "subject": self.subject,
            "status": self.status, "ticket_ids": [], "assignee": None,
            "recipient": {"name": self.customer_name, "handle": self.handle, "role": "from"},
            "tags": [], "links": [], "custom_fields": {}, "is_private": False,
            "scheduled_reminders": [], "metadata": {}, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status_category is not None:
            data["status_id"], data["status_category"] = self.status_id, self.status_category
        return data


@dataclass
class SimEvent:
    id: str
    type: str
    emitted_at: float
    conversation_id: str
    source: str  # "inboxes", "teammate", "rule", "api"
    target: SimEntry | None = None

    def json(self, base: str, conversation: SimConversation,
             source: SimTeammate | None) -> dict[str, Any]:
        target = None if self.target is None else {
            "_meta": {"type": self.target.kind}, "data": self.target.json(base, conversation)}
        return {
            "_links": {"self": f"{base}/events/{self.id}"}, "id": self.id, "type": self.type,
            "emitted_at": self.emitted_at,
            "source": {"_meta": {"type": "teammate" if source else self.source},
                       "data": source.json(base) if source else []},
            "target": target, "conversation": conversation.json(base),
        }


def front_error(status: int, title: str, message: str) -> SimResponse:
    return SimResponse(status, {"_error": {"status": status, "title": title,
                                           "message": message}})


class FrontSimulator(Simulator):
    """One Front company: a connector teammate (a person's seat), a human agent, a rule bot."""

    service = "front"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/me", "me"), ("GET", "/events", "events"),
        ("GET", "/teammates/<teammate_id>", "teammate"),
        ("GET", "/channels/<channel_id>", "channel"),
        ("GET", "/conversations/<conversation_id>", "conversation"),
        ("GET", "/conversations/<conversation_id>/messages", "messages"),
        ("GET", "/conversations/<conversation_id>/comments", "comments"),
        ("GET", "/conversations/<conversation_id>/drafts", "drafts"),
        ("POST", "/conversations/<conversation_id>/drafts", "draft_create"),
    ]

    def __init__(self, port: int = 0, *, api_token: str = "front-api-token-3e9") -> None:
        super().__init__(port)
        self.api_token = api_token
        self._ids = itertools.count(1000)
        self._last_stamp = 0.0
        self._tokens: dict[str, tuple[str, dict[str, Any], int]] = {}
        self.teammates: dict[str, SimTeammate] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, SimConversation] = {}
        self.events: list[SimEvent] = []
        self.bot = self.add_teammate("Uppzy", "Assistant", "uppzy@example.com")
        self.agent = self.add_teammate("Sam", "Agent", "sam.agent@example.com")
        self.rule = self.add_teammate("Auto-reply", "rule", "rule@example.com", kind="rule")
        self.channel = self.add_channel("Support", "support@example.com")

    # ----- setting up ------------------------------------------------------------------------
    def add_teammate(self, first: str, last: str, email: str, *, kind: str = "user") -> str:
        teammate = SimTeammate(self._new_id("tea"), email, first, last, kind)
        self.teammates[teammate.id] = teammate
        return teammate.id

    def add_channel(self, name: str, address: str) -> str:
        """A channel as Front describes it (spec: ChannelResponse)."""
        channel_id = self._new_id("cha")
        self.channels[channel_id] = {
            "_links": {"self": f"{self.url}/channels/{channel_id}"}, "id": channel_id,
            "name": name, "address": address, "type": "smtp", "send_as": address,
            "settings": {"undo_send_time": 0}, "is_private": False, "is_valid": True}
        return channel_id

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
        return self._by_teammate(conversation_id, teammate_id, body, "message", "out_reply")

    def comment(self, conversation_id: str, teammate_id: str, body: str) -> str:
        return self._by_teammate(conversation_id, teammate_id, body, "comment", "comment")

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
        self.conversations[conversation_id].restricted = True

    def corrupt(self, conversation_id: str) -> None:
        """The conversation's first message loses its id."""
        self.conversations[conversation_id].entries[0].corrupt = True

    # ----- the play API (Front's ids are text, so the play API speaks them) ----------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> TicketRef:
        return self.create_conversation(customer, body, subject=subject)

    def customer_reply(self, ticket_id: TicketRef, body: str) -> TicketRef:
        return self.customer_writes(str(ticket_id), body)

    def agent_reply(self, ticket_id: TicketRef, body: str) -> TicketRef:
        return self.teammate_replies(str(ticket_id), self.agent, body)

    def resolve(self, ticket_id: TicketRef) -> None:
        self.set_status(str(ticket_id), "archived", "archive")

    # ----- routes ----------------------------------------------------------------------------
    def handle_me(self, request: SimRequest) -> SimResponse:
        return self._denied(request) or SimResponse(200, {
            "_links": {"self": f"{self.url}/me"}, "id": "cmp_sim", "name": "Simulated Company"})

    def handle_teammate(self, request: SimRequest, teammate_id: str) -> SimResponse:
        teammate = self.teammates.get(teammate_id)
        return self._denied(request) or (
            SimResponse(200, teammate.json(self.url)) if teammate
            else front_error(404, "Not found", f"Unknown teammate {teammate_id}"))

    def handle_channel(self, request: SimRequest, channel_id: str) -> SimResponse:
        channel = self.channels.get(channel_id)
        return self._denied(request) or (
            SimResponse(200, channel) if channel
            else front_error(404, "Not found", f"Unknown channel {channel_id}"))

    def handle_events(self, request: SimRequest) -> SimResponse:
        if denied := self._denied(request):
            return denied
        query = self._events_query(request)
        if isinstance(query, SimResponse):
            return query
        return self._page(request, "/events", query, EVENTS_LIMIT, self._event_rows)

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
        if problem := self._draft_problem(spec):
            return front_error(400, "Bad request", problem)
        with self.lock:
            entry = SimEntry(self._new_id("msg"), "message", self._stamp(), spec["body"],
                             author=self.teammates[spec.get("author_id") or self.bot],
                             draft_mode=spec.get("mode") or "private")
            found.entries.append(entry)
        return SimResponse(200, entry.json(self.url, found))

    # ----- the vendor's headers and limits ---------------------------------------------------
    def vendor_headers(self, endpoint: str, request: SimRequest, response: SimResponse
                       ) -> dict[str, str]:
        """Front's rate-limit headers (the Starter plan's 50 a minute), counted per minute."""
        now = time.monotonic()
        used = sum(1 for call in self.calls if now - call.at < RATE_WINDOW)
        return {"x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": str(max(0, RATE_LIMIT - used - 1)),
                "x-ratelimit-reset": str(math.ceil(time.time() + RATE_WINDOW))}

    def _denied(self, request: SimRequest) -> SimResponse | None:
        """401 unless the request carries the company's token as a bearer token."""
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return front_error(401, "Unauthorized", "Invalid or missing API token")
        return None

    # ----- helpers ---------------------------------------------------------------------------
    def _readable(self, request: SimRequest, conversation_id: str
                  ) -> SimConversation | SimResponse:
        if denied := self._denied(request):
            return denied
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
            """The list, newest first as Front lists it; drafts only in the drafts list."""
            with self.lock:
                listed = [e for e in found.entries
                          if e.kind == kind and (e.draft_mode is not None) == drafts]
                return [e.json(self.url, found)
                        for e in sorted(listed, key=lambda e: e.created_at, reverse=True)]

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
            whole, _, decimals = value.partition(".")
            if not whole.isdigit() or not (decimals.isdigit() or not decimals) or \
                    len(decimals) > 3 or len(whole) > 11:
                return front_error(400, "Bad request",
                                   f"q[{bound}] must be seconds with up to 3 decimals")
            query[bound] = float(value)
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
        """What Front's ReplyDraft schema refuses: no body, no or unknown channel_id, an
        unknown author_id, a mode other than private or shared."""
        if not isinstance(spec, dict) or not isinstance(spec.get("body"), str):
            return "body is required"
        problems = [(spec.get("channel_id") not in self.channels, "channel_id must name a channel"),
                    (spec.get("author_id", self.bot) not in self.teammates, "unknown author_id"),
                    (spec.get("mode", "private") not in ("private", "shared"), "invalid mode")]
        return next((problem for wrong, problem in problems if wrong), None)

    def _add(self, conversation: SimConversation, kind: str, body: str, *, html: bool,
             event: str, source: str, **fields: Any) -> str:
        """An entry from what someone typed: a message in text gets its HTML form and keeps
        the text, one in HTML gets the text version Front makes of e-mail."""
        if kind == "message":
            body, fields["text"] = (body, html_to_text(body)) if html else \
                (text_to_html(body), body)
        entry = SimEntry(self._new_id("msg" if kind == "message" else "com"), kind,
                         self._stamp(), body, **fields)
        conversation.entries.append(entry)
        self._event(conversation, event, source, entry)
        return entry.id

    def _event(self, conversation: SimConversation, kind: str, source: str,
               target: SimEntry | None = None) -> None:
        conversation.updated_at = at = self._stamp()
        self.events.append(SimEvent(self._new_id("evt"), kind, at, conversation.id, source,
                                    target))

    def _by_teammate(self, conversation_id: str, teammate_id: str, body: str, kind: str,
                     event: str) -> str:
        """An entry a teammate writes; its event names the teammate, or ``rule`` for a rule."""
        with self.lock:
            author = self.teammates[teammate_id]
            return self._add(self._live(conversation_id), kind, body, html=False, author=author,
                             event=event, source="rule" if author.type == "rule" else author.id)

    def _live(self, conversation_id: str) -> SimConversation:
        conversation = self.conversations[conversation_id]
        if conversation.merged_into is not None:
            raise ValueError(f"{conversation_id} was merged")
        return conversation

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{base36(next(self._ids))}"

    def _stamp(self) -> float:
        """Now in seconds to the millisecond, always after the previous stamp, so events are
        apart and ordered as they happened."""
        with self.lock:
            self._last_stamp = max(round(time.time(), 3), round(self._last_stamp + 0.001, 3))
            return self._last_stamp

