"""An in-memory Intercom (REST API 2.11) over real HTTP, for tests and ``connector sandbox``.

It follows the paths, bodies and errors of Intercom's OpenAPI description 2.11 for the endpoints
the adapter uses, and enforces what a careless client gets wrong (addresses and what each says:
docs/adapters/intercom.md):

- ``Authorization: Bearer <token>``; anything else, or a revoked token (``revoke``), is 401
  ``unauthorized`` without rate-limit headers (Intercom sends them only to authenticated calls).
- ``Intercom-Version`` must name the version this simulator speaks (2.11): without it Intercom
  answers in the app's default version, whose shapes the adapter was not written for, so the
  simulator refuses the call (400 ``intercom_version_invalid``) instead of guessing.
- Conversation search: the query language, day-precision dates and paging of
  ``adapters.intercom.simulator.search``; results in id order, never by ``updated_at``; no parts.
- A read returns the 500 most recent parts; unknown or deleted conversations are 404
  ``not_found``, restricted ones 403; a workspace whose plan lacks API access
  (``plan_restricted``) answers 403 ``api_plan_restricted`` to every call.
- Replies: ``message_type`` ``note`` or ``comment`` with ``type: admin`` and an existing
  ``admin_id`` (404 ``admin_not_found`` otherwise); the answer is the whole conversation.
- Every authenticated answer carries ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (a Unix
  time) for a window of 10 seconds; over ``rate_limit`` calls in a window the answer is 429
  ``rate_limit_exceeded`` with those headers and no ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar

from adapters.intercom.simulator.search import (
    QueryError,
    compile_query,
    cursor_after,
    page_request,
)
from adapters.intercom.simulator.workspace import Workspace
from adapters.signatures import post_webhook
from adapters.simulation import SimRequest, SimResponse, Simulator

API_VERSION = "2.11"
WINDOW = 10  # seconds: Intercom counts its limits in 10-second windows
NOMINAL_LIMIT = 1667  # a private app's 10 000 a minute, per 10 seconds


def error(status: int, code: str, message: str) -> SimResponse:
    """Intercom's ``error.list`` body."""
    return SimResponse(status, {"type": "error.list", "request_id": secrets.token_hex(16),
                                "errors": [{"code": code, "message": message}]})


class IntercomSimulator(Simulator):
    """One workspace with the connector's admin (``bot_admin_id``) and its access token."""

    service = "intercom"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/me", "me"),
        ("GET", "/admins/<admin_id>", "admin_show"),
        ("POST", "/conversations/search", "conversation_search"),
        ("GET", "/conversations/<conversation_id>", "conversation_show"),
        ("POST", "/conversations/<conversation_id>/reply", "conversation_reply"),
    ]

    def __init__(self, port: int = 0, *, rate_limit: int | None = None, utc_offset: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(port)
        self.workspace = Workspace(clock)
        self.rate_limit = rate_limit
        self.utc_offset = utc_offset  # the workspace's timezone, for day-precision search
        self.bot_admin_id = self.workspace.add_admin("Uppzy AI", "uppzy-ai@example.com")
        self.token = "ic-" + secrets.token_hex(16)
        self._tokens: dict[str, str] = {self.token: self.bot_admin_id}
        self._window: tuple[int, int] = (0, 0)  # (window start, calls in it)
        self.lose_answers = 0  # replies written whose answer is then lost (connection dropped)
        self.plan_restricted = False  # the workspace's plan has no API access: 403 everywhere

    # ----- set-up and inspection --------------------------------------------------------------
    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"access_token": self.token},
                "admin_id": self.bot_admin_id}

    def revoke(self, token: str | None = None) -> None:
        """The app is uninstalled or its token revoked: every call with it is 401 from now."""
        with self.lock:
            self._tokens.pop(token or self.token, None)

    def parts_by(self, conversation_id: str, author_id: str, part_type: str) -> list[str]:
        """HTML bodies of the parts ``author_id`` wrote with ``part_type``, oldest first."""
        with self.lock:
            return [part.body or "" for part in
                    self.workspace.conversations[conversation_id].parts
                    if part.author.id == author_id and part.part_type == part_type]

    def notes_by_bot(self) -> dict[str, int]:
        """How many notes the connector's admin wrote on each conversation."""
        with self.lock:
            return {cid: count for cid in self.workspace.conversations
                    if (count := len(self.parts_by(cid, self.bot_admin_id, "note")))}

    def state(self) -> dict[str, Any]:
        return {"notes": self.notes_by_bot()}

    def signed_notification(
        self, secret: str, conversation_id: str | int, topic: str = "conversation.user.replied"
    ) -> tuple[bytes, dict[str, str]]:
        """A notification about the conversation and its headers, signed as Intercom signs:
        ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`` keyed with the app's secret."""
        body = json.dumps({
            "type": "notification_event", "id": "notif_" + secrets.token_hex(8),
            "topic": topic, "app_id": "simapp", "created_at": self.workspace.now(),
            "data": {"type": "notification_event_data",
                     "item": {"type": "conversation", "id": str(conversation_id)}},
        }).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        return body, {"X-Hub-Signature": f"sha1={digest}"}

    def send_webhook(self, url: str, secret: str, conversation_id: str | int,
                     topic: str = "conversation.user.replied") -> int:
        """Deliver a signed notification to ``url``; returns the status it got."""
        body, headers = self.signed_notification(secret, conversation_id, topic)
        return post_webhook(url, body, headers)

    # ----- the play API (connector sandbox) --------------------------------------------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        with self.lock:
            contact = self.workspace.add_contact(customer, self.play_email(customer))
            return int(self.workspace.open_conversation(contact, body, subject=subject))

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            contact = self.workspace.conversations[str(ticket_id)].author.id
            return int(self.workspace.add_part(str(ticket_id), contact, "comment", body))

    def agent_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            agent = str(self.play_agent(lambda name, email: int(
                self.workspace.add_admin(name, email))))
            return int(self.workspace.add_part(str(ticket_id), agent, "comment", body))

    def resolve(self, ticket_id: int) -> None:
        with self.lock:
            agent = str(self.play_agent(lambda name, email: int(
                self.workspace.add_admin(name, email))))
            self.workspace.set_state(str(ticket_id), agent, "closed")

    # ----- the vendor's side of every call ----------------------------------------------------
    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        """Rate-limit headers on authenticated answers; an injected 429 speaks Intercom."""
        reset = self._window[0] + WINDOW
        if response.status == 429 and "Retry-After" in response.headers:
            wait = float(response.headers.pop("Retry-After"))
            reset = math.ceil(time.time() + wait)
            response.body = response.body or error(429, "rate_limit_exceeded",
                                                   "Exceeded rate limit").body
        if response.status == 401:
            return {}
        limit = self.rate_limit or NOMINAL_LIMIT
        remaining = 0 if response.status == 429 else max(0, limit - self._window[1])
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(reset)}

    def _guard(self, request: SimRequest) -> str | SimResponse:
        """The token's admin, or the answer that ends the request (401, 400, 429)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        admin = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if admin is None:
            return error(401, "unauthorized", "Access Token Invalid")
        if request.headers.get("intercom-version") != API_VERSION:
            return error(400, "intercom_version_invalid",
                         f"this workspace speaks Intercom-Version {API_VERSION}; send it")
        if self.plan_restricted:
            return error(403, "api_plan_restricted", "Active subscription needed.")
        return self._count_call() or admin

    def _count_call(self) -> SimResponse | None:
        now = int(time.time())
        start, used = self._window
        if now >= start + WINDOW:
            start, used = now - now % WINDOW, 0
        self._window = (start, used + 1)
        if self.rate_limit is not None and used >= self.rate_limit:
            return error(429, "rate_limit_exceeded",
                         f"Exceeded rate limit of {self.rate_limit} in 10_seconds")
        return None

    # ----- handlers ---------------------------------------------------------------------------
    def handle_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            admin = self._guard(request)
            if isinstance(admin, SimResponse):
                return admin
            return SimResponse(200, self._admin_json(admin))

    def handle_admin_show(self, request: SimRequest, admin_id: str) -> SimResponse:
        with self.lock:
            refused = self._guard(request)
            if isinstance(refused, SimResponse):
                return refused
            person = self.workspace.people.get(admin_id)
            if person is None or person.type != "admin":
                return error(404, "admin_not_found", "Admin for admin_id not found")
            return SimResponse(200, self._admin_json(admin_id))

    def handle_conversation_search(self, request: SimRequest) -> SimResponse:
        with self.lock:
            refused = self._guard(request)
            if isinstance(refused, SimResponse):
                return refused
            spec = request.json()
            try:
                if not isinstance(spec, dict) or "query" not in spec:
                    raise QueryError("query is required")
                match = compile_query(spec["query"], self.utc_offset)
                per_page, after = page_request(spec.get("pagination"))
            except QueryError as exc:
                return error(400, "invalid_query", str(exc))
            found = [c for c in self.workspace.visible() if not c.restricted and match(c)]
            rest = [c for c in found if int(c.id) > after]
            page = rest[:per_page]
            pages: dict[str, Any] = {"type": "pages", "per_page": per_page,
                                     "total_pages": max(1, math.ceil(len(found) / per_page))}
            if len(rest) > per_page:
                pages["next"] = {"per_page": per_page, "starting_after": cursor_after(page[-1].id)}
            return SimResponse(200, {
                "type": "conversation.list", "total_count": len(found), "pages": pages,
                "conversations": [self.workspace.summary(c) for c in page],
            })

    def handle_conversation_show(self, request: SimRequest, conversation_id: str) -> SimResponse:
        with self.lock:
            found = self._conversation(request, conversation_id)
            if isinstance(found, SimResponse):
                return found
            return SimResponse(200, self.workspace.full(self.workspace.conversations[found]))

    def handle_conversation_reply(
        self, request: SimRequest, conversation_id: str
    ) -> SimResponse | None:
        """A note or comment; with ``lose_answers`` the write happens and the answer is lost,
        as when a connection breaks after Intercom acted."""
        with self.lock:
            found = self._conversation(request, conversation_id)
            if isinstance(found, SimResponse):
                return found
            spec = request.json()
            if not isinstance(spec, dict) or spec.get("type") != "admin" or \
                    spec.get("message_type") not in ("note", "comment"):
                return error(400, "parameter_invalid",
                             "type must be admin and message_type note or comment")
            author = self.workspace.people.get(str(spec.get("admin_id")))
            if author is None or author.type != "admin":
                return error(404, "admin_not_found", "Admin for admin_id not found")
            if not isinstance(spec.get("body"), str) or not spec["body"].strip():
                return error(400, "parameter_invalid", "body is required")
            self.workspace.add_part(found, author.id, spec["message_type"], spec["body"],
                                    html=True)
            if self.lose_answers > 0:
                self.lose_answers -= 1
                return None
            return SimResponse(200, self.workspace.full(self.workspace.conversations[found]))

    def _conversation(self, request: SimRequest, conversation_id: str) -> str | SimResponse:
        refused = self._guard(request)
        if isinstance(refused, SimResponse):
            return refused
        conversation = self.workspace.conversations.get(conversation_id)
        if conversation is None or conversation.deleted:
            return error(404, "not_found", "Resource Not Found")
        if conversation.restricted:
            return error(403, "forbidden", "Access to this conversation is restricted")
        return conversation_id

    def _admin_json(self, admin_id: str) -> dict[str, Any]:
        person = self.workspace.people[admin_id]
        return {"type": "admin", "id": person.id, "name": person.name, "email": person.email,
                "away_mode_enabled": False, "has_inbox_seat": True, "team_ids": []}
