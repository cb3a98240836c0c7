"""An in-memory Zendesk Support served over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths and JSON shapes of the endpoints the adapter uses, and the
behaviours that break naive clients: the export leaves out the newest changes, refuses a
``start_time`` it will not serve, and re-exports a ticket changed after its cursor position; a
comment is public unless ``public: false`` is sent; wrong credentials get 401, none at all get the
anonymous user on ``users/me``; every answer carries the rate-limit headers.

The documents it follows (each fact, its address and the test that holds the simulator to it are
listed in ``docs/adapters/zendesk.md``):

- OAuth: "OAuth Tokens for Grant Types"
  (https://developer.zendesk.com/api-reference/ticketing/oauth/grant_type_tokens/), the
  refresh-token and expiry announcement (https://support.zendesk.com/hc/en-us/articles/9182123625370)
  and "Migrating from API tokens to OAuth access tokens"
  (https://developer.zendesk.com/documentation/api-basics/authentication/oauth-migration/):
  ``POST /oauth/tokens`` takes JSON; access tokens expire (``access_token_ttl``, Zendesk's default
  30 minutes); a refresh-token grant returns a new access and refresh token and invalidates both
  previous ones; a revoked client is refused.
- Incremental exports
  (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/):
  allowed for admins only (an agent gets 403); ``support_type_scope`` (``agent`` by default, so
  tickets handled by AI agents are left out unless ``all`` is asked); a limit of 10 requests a
  minute of its own (``export_rate_limit``), on top of the account's.
- Placeholders (https://support.zendesk.com/hc/en-us/articles/4408886858138): ``{{...}}`` in a
  comment written through the API is rendered like a macro's (whether Zendesk does this for API
  comments is *unverified*; the simulator assumes the worst).

Changes get strictly increasing nanosecond stamps (``generated_timestamp`` is their whole second),
so a change made while a client pages can never land behind a cursor already handed out. Zendesk
gets the same guarantee from its one-minute exclusion; here it holds even with
``exclude_newest=0``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from adapters.signatures import post_webhook
from adapters.simulation import SimRequest, SimResponse, Simulator
from adapters.text import html_to_text

NS = 1_000_000_000
ROLES = ("end-user", "agent", "admin")
SUPPORT_TYPES = ("agent", "ai_agent")  # who handles a ticket; the export lists "agent" by default
EXPORT_LIMIT = 10  # requests a minute to the incremental exports, Zendesk's documented limit
DEFAULT_TOKEN_TTL = 1800.0  # OAuth clients created after 2026-04-30: 30-minute access tokens
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
CATEGORIES = ("new", "open", "pending", "hold", "solved")
NOMINAL_LIMIT = 700  # what X-Rate-Limit says when no limit is enforced (Enterprise plan)
_ENDPOINTS = [
    ("GET", "/api/v2/users/me", "users_me"),
    ("GET", "/api/v2/incremental/tickets/cursor", "incremental_tickets"),
    ("GET", "/api/v2/tickets/<int:ticket_id>", "ticket_show"),
    ("PUT", "/api/v2/tickets/<int:ticket_id>", "ticket_update"),
    ("GET", "/api/v2/tickets/<int:ticket_id>/comments", "ticket_comments"),
    ("GET", "/api/v2/custom_statuses", "custom_statuses"),
]
_OAUTH_ROUTES = [("POST", "/oauth/tokens", "oauth_tokens")]
_NO_SYSTEM_SOURCE: dict[str, Any] = {"from": {}, "to": {}, "rel": None}


@dataclass
class _User:
    id: int
    name: str
    email: str | None
    role: str
    created_at: str


@dataclass
class _OAuthClient:
    identifier: str
    secret: str
    user_id: int  # whom a client-credentials token acts as (the admin who made the client)
    revoked: bool = False


@dataclass
class _AccessToken:
    user_id: int
    expires_at: float  # monotonic; math.inf for tokens that never expire
    client: str | None = None
    refresh: str | None = None  # the refresh token issued with it; using that one ends it


@dataclass
class _Comment:
    id: int
    author_id: int
    text: str
    markup: str
    public: bool
    via: dict[str, Any]
    created_at: str
    audit_id: int
    html_only: bool  # served with html_body alone, as some channels deliver comments


@dataclass
class _Ticket:
    id: int
    subject: str
    status: str
    custom_status_id: int | None
    requester_id: int
    group_id: int | None
    brand_id: int | None
    tags: list[str]
    via: dict[str, Any]
    created_at: str
    support_type: str = "agent"
    updated_at: str = ""
    stamp: int = 0  # nanoseconds of the last change: the export's order and cursor position
    comments: list[_Comment] = field(default_factory=list)


def _iso(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(*parts: int) -> str:
    return base64.urlsafe_b64encode("|".join(map(str, parts)).encode()).decode()


def _decode(cursor: str, count: int) -> tuple[int, ...] | None:
    try:
        parts = tuple(int(p) for p in base64.urlsafe_b64decode(cursor).decode().split("|"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return parts if len(parts) == count else None


def _error(status: int, error: str, description: str) -> SimResponse:
    return SimResponse(status, {"error": error, "description": description})


def _oauth_error(status: int, error: str, description: str) -> SimResponse:
    return SimResponse(status, {"error": error, "error_description": description})


def _unauthenticated() -> SimResponse:
    return _error(401, "Couldn't authenticate you", "Couldn't authenticate you")


def _via(channel: str, rel: str | None = None) -> dict[str, Any]:
    return {"channel": channel, "source": {**_NO_SYSTEM_SOURCE, "rel": rel}}


class ZendeskSimulator(Simulator):
    """Zendesk Support API v2, the subset the adapter uses, with the state tests inspect.

    ``exclude_newest``: seconds of newest changes the export leaves out (Zendesk: 60).
    ``rate_limit``: requests per minute before 429 with ``Retry-After`` (None: unlimited).
    ``custom_statuses``: False answers ``custom_statuses`` with 403, as an account without them.
    ``comment_count_public_only``: the export's ``comment_count`` side-load counts public comments
    only (default: every comment). Which one real Zendesk does is not confirmed, so the engine
    must be right under both.
    ``export_rate_limit``: requests per minute to the export before its own 429 (Zendesk: 10;
    None: only the account limit, so tests that poll many times a second are not slowed).
    ``token_ttl``: seconds an access token from ``/oauth/tokens`` lives (Zendesk's default 1800).
    A bot user (``bot_role``, an admin as the export needs) with the given e-mail, API token and
    a never-expiring OAuth access token exists from the start, with a confidential OAuth client
    ``bot_client_id``/``bot_client_secret`` whose client-credentials tokens act as the bot.
    """

    service = "zendesk"
    routes = [
        (method, rule + suffix, name)
        for method, rule, name in _ENDPOINTS
        for suffix in (".json", "")
    ] + _OAUTH_ROUTES

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        exclude_newest: float = 60.0,
        rate_limit: int | None = None,
        custom_statuses: bool = True,
        comment_count_public_only: bool = False,
        bot_email: str = "bot@example.com",
        bot_role: str = "admin",
        api_token: str = "zd-token",
        access_token: str = "zd-oauth",
        export_rate_limit: int | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        bot_client_id: str = "uppzy_connector",
        bot_client_secret: str = "zd-client-secret",
    ) -> None:
        super().__init__(port, host)
        self.exclude_newest = exclude_newest
        self.rate_limit = rate_limit
        self.export_rate_limit = export_rate_limit
        self.token_ttl = token_ttl
        self._export_window: deque[float] = deque()
        self.oauth_clients: dict[str, _OAuthClient] = {}
        self._refresh_tokens: dict[str, tuple[str, int]] = {}  # token -> (client, user id)
        self.refresh_tokens_used: list[str] = []  # every refresh token presented, in order
        self.issued_tokens: list[str] = []  # every access token a grant handed out, in order
        self.placeholders_rendered = 0
        self.custom_statuses_enabled = custom_statuses
        self.comment_count_public_only = comment_count_public_only
        self._ids = itertools.count(1001)
        self._ticket_ids = itertools.count(1)
        self._last_stamp = 0
        self._window: deque[float] = deque()
        self.users: dict[int, _User] = {}
        self.tickets: dict[int, _Ticket] = {}
        self.custom_statuses: dict[int, dict[str, Any]] = {}
        self._default_status: dict[str, int] = {}
        self._api_tokens: dict[tuple[str, str], int] = {}
        self.restricted: set[int] = set()  # tickets the API answers with 403
        self.corrupted: set[int] = set()  # tickets whose comment listing carries a broken entry
        self._access_tokens: dict[str, _AccessToken] = {}
        if custom_statuses:
            for category in CATEGORIES:
                label = "On-hold" if category == "hold" else category.capitalize()
                self._default_status[category] = self.add_custom_status(label, category)
        self.bot_email, self.bot_api_token = bot_email, api_token
        self.bot_user_id = self.add_user("Uppzy Bot", bot_role, email=bot_email)
        self.add_api_token(self.bot_user_id, api_token)
        self.add_access_token(self.bot_user_id, access_token)
        self.bot_client_id, self.bot_client_secret = bot_client_id, bot_client_secret
        self.add_oauth_client(bot_client_id, bot_client_secret, self.bot_user_id)

    # ----- Python API for tests and the sandbox ----------------------------------------------
    def add_user(self, name: str, role: str, email: str | None = None) -> int:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.lock:
            user_id = next(self._ids)
            self.users[user_id] = _User(user_id, name, email, role, _iso(self._stamp()))
        return user_id

    def delete_user(self, user_id: int) -> None:
        """Permanently delete a user: their comments stay, but they are no longer side-loaded."""
        with self.lock:
            del self.users[user_id]

    def add_api_token(self, user_id: int, token: str) -> None:
        with self.lock:
            email = self.users[user_id].email
            if not email:
                raise ValueError("an API token needs a user with an e-mail")
            self._api_tokens[(email, token)] = user_id

    def add_access_token(self, user_id: int, token: str) -> None:
        """A token that never expires, as clients created before 2026-04-30 hand out."""
        with self.lock:
            if user_id not in self.users:
                raise KeyError(f"no user {user_id}")
            self._access_tokens[token] = _AccessToken(user_id, math.inf)

    def add_oauth_client(self, identifier: str, secret: str, user_id: int) -> None:
        """A confidential OAuth client; its client-credentials tokens act as ``user_id``."""
        with self.lock:
            self.oauth_clients[identifier] = _OAuthClient(identifier, secret, user_id)

    def revoke_client(self, identifier: str) -> None:
        """Deactivate the client: its tokens stop working and every grant is refused."""
        with self.lock:
            self.oauth_clients[identifier].revoked = True
            for token in [t for t, a in self._access_tokens.items() if a.client == identifier]:
                del self._access_tokens[token]

    def authorize(self, user_id: int, client: str | None = None) -> str:
        """The refresh token an authorization-code flow would leave the user's app with."""
        with self.lock:
            token = f"zd-refresh-{secrets.token_hex(8)}"
            self._refresh_tokens[token] = (client or self.bot_client_id, user_id)
            return token

    def expire_access_tokens(self) -> None:
        """Every issued access token expires now (as after a long pause of the connector)."""
        with self.lock:
            for token in self._access_tokens.values():
                if token.client is not None:
                    token.expires_at = 0.0

    def set_support_type(self, ticket_id: int, support_type: str) -> None:
        """Hand the ticket to an AI agent (``ai_agent``) or back to people (``agent``)."""
        if support_type not in SUPPORT_TYPES:
            raise ValueError(f"support_type must be one of {SUPPORT_TYPES}")
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.support_type = support_type
            self._touch(ticket)

    def add_custom_status(self, agent_label: str, status_category: str) -> int:
        if status_category not in CATEGORIES:
            raise ValueError(f"status_category must be one of {CATEGORIES}")
        with self.lock:
            status_id = next(self._ids)
            now = _iso(self._stamp())
            self.custom_statuses[status_id] = {
                "id": status_id, "agent_label": agent_label, "end_user_label": agent_label,
                "status_category": status_category, "active": True,
                "default": status_category not in self._default_status,
                "description": "", "created_at": now, "updated_at": now,
            }
        return status_id

    def create_ticket(
        self,
        requester_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        tags: tuple[str, ...] | list[str] = (),
        group_id: int | None = None,
        brand_id: int | None = None,
        via_channel: str = "email",
        html: bool = False,
    ) -> int:
        """A new ticket; its description is the first public comment, by the requester.

        ``html=True`` takes ``body`` as HTML, served with ``html_body`` only (as ``add_comment``).
        """
        with self.lock:
            ticket_id = next(self._ticket_ids)
            ticket = _Ticket(
                ticket_id, subject, "new", self._default_status.get("new"), requester_id,
                group_id, brand_id, list(dict.fromkeys(tags)), _via(via_channel),
                _iso(self._stamp()),
            )
            self.tickets[ticket_id] = ticket
            self._new_comment(
                ticket, requester_id, None if html else body, body if html else None,
                public=True, via=_via(via_channel), html_only=html,
            )
            self._touch(ticket)
        return ticket_id

    def add_comment(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        *,
        public: bool = True,
        via_channel: str | None = None,
        via_rel: str | None = None,
        html: bool = False,
    ) -> int:
        """Add a comment as someone else would (agent UI, mail, trigger).

        ``via_channel="rule"`` marks trigger output (``via_rel`` defaults to "trigger").
        ``html=True`` takes ``body`` as HTML and serves the comment with ``html_body`` only.
        A requester's public reply reopens a pending or solved ticket, as in Zendesk.
        """
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            if ticket.status == "closed":
                raise ValueError("closed tickets cannot take comments")
            rel = via_rel or ("trigger" if via_channel == "rule" else None)
            comment = self._new_comment(
                ticket, author_id, None if html else body, body if html else None,
                public=public, via=_via(via_channel or "web", rel), html_only=html,
            )
            author = self.users.get(author_id)
            if public and author and author.role == "end-user" and ticket.status in (
                "pending", "solved",
            ):
                self._set_status(ticket, "open", None)
            self._touch(ticket)
        return comment.id

    def set_status(self, ticket_id: int, status: str, custom_status_id: int | None = None) -> None:
        """Set the status; without ``custom_status_id`` the category's default is used."""
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            self._set_status(ticket, status, custom_status_id)
            self._touch(ticket)

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            self._touch(ticket)

    def delete_ticket(self, ticket_id: int) -> None:
        """Soft delete: gone from the API, exported once more with status "deleted"."""
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.status = "deleted"
            self._touch(ticket)

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Zendesk does: both tickets get the agent's private comment, the source is
        closed."""
        with self.lock:
            source, target = self._live_ticket(source_id), self._live_ticket(target_id)
            for ticket, text in (
                (source, f"Request #{source_id} was closed and merged into request #{target_id}."),
                (target, f"Request #{source_id} was merged into this request."),
            ):
                self._new_comment(ticket, agent_id, text, None, public=False, via=_via("merge"))
                self._touch(ticket)
            self._set_status(source, "closed", None)

    def restrict_ticket(self, ticket_id: int) -> None:
        """From now on reading or updating the ticket answers 403, as for a ticket moved to a
        group the agent may not see; the export still lists it."""
        with self.lock:
            self.restricted.add(ticket_id)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """From now on the ticket's comment listing starts with an entry without a usable id,
        time or body, as a broken integration can leave behind."""
        with self.lock:
            self.corrupted.add(ticket_id)

    def comments(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's comments as the API serves them, oldest first."""
        with self.lock:
            return [self._comment_json(c) for c in self.tickets[ticket_id].comments]

    def notes_by(self, user_id: int) -> list[dict[str, Any]]:
        """Private comments written by ``user_id`` on any ticket, each with its ``ticket_id``."""
        with self.lock:
            return [
                {**self._comment_json(c), "ticket_id": t.id}
                for t in self.tickets.values() for c in t.comments
                if c.author_id == user_id and not c.public
            ]

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as the API serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id])

    def send_webhook(
        self, url: str, secret: str, ticket_id: int, *, timestamp: str | None = None,
        invocation_id: str | None = None,
    ) -> int:
        """Deliver a ``ticket.comment_added`` event webhook to ``url`` as Zendesk signs it:
        base64 HMAC-SHA256 of timestamp + body. Returns the receiver's status code.

        ``timestamp`` (ISO 8601, default now) lets a test send a stale one; ``invocation_id``
        (default random) lets it redeliver the same invocation.
        """
        with self.lock:
            ticket = self.tickets[ticket_id]
            detail = {"id": str(ticket.id), "status": ticket.status.upper(),
                      "requester_id": str(ticket.requester_id), "subject": ticket.subject,
                      "updated_at": ticket.updated_at, "via": {"channel": ticket.via["channel"]}}
        stamp = timestamp or _iso(time.time_ns())
        body = json.dumps({
            "type": "zen:event-type:ticket.comment_added", "account_id": 1,
            "id": str(uuid.uuid4()), "time": stamp, "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket.id}", "detail": detail, "event": {},
        }).encode()
        digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
        return post_webhook(url, body, {
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Webhook-Id": "01SIMULATEDWEBHOOK",
            "X-Zendesk-Webhook-Invocation-Id": invocation_id or str(uuid.uuid4()),
            "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        })

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url,
                "auth": {"email": self.bot_email, "api_token": self.bot_api_token}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "users": [
                    {"id": u.id, "name": u.name, "role": u.role} for u in self.users.values()
                ],
                "tickets": [
                    {"id": t.id, "status": t.status, "comments": len(t.comments)}
                    for t in self.tickets.values()
                ],
                "bot_notes": self.notes_by(self.bot_user_id),
            }

    # ----- HTTP handlers ---------------------------------------------------------------------
    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-Rate-Limit": str(limit),
                "X-Rate-Limit-Remaining": str(max(0, limit - len(self._window)))}

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            refused = self._admit()
            if refused is not None:
                return refused
            if "authorization" not in request.headers:
                return SimResponse(200, {"user": {
                    "id": None, "url": None, "name": "Anonymous user", "email": None,
                    "role": "end-user", "active": True, "created_at": None,
                }})
            user = self._user(request)
            if user is None:
                return _unauthenticated()
            return SimResponse(200, {"user": self._user_json(user)})

    def handle_oauth_tokens(self, request: SimRequest) -> SimResponse:
        """Create Token for Grant Type: JSON only; a refresh rotates both tokens."""
        with self.lock:
            if "json" not in request.headers.get("content-type", ""):
                return _oauth_error(400, "invalid_request", "The request must be JSON")
            payload = request.json()
            if not isinstance(payload, dict):
                return _oauth_error(400, "invalid_request", "The request must be a JSON object")
            client = self.oauth_clients.get(str(payload.get("client_id")))
            if client is None or client.revoked or payload.get("client_secret") != client.secret:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            grant = payload.get("grant_type")
            if grant == "client_credentials":
                return SimResponse(200, self._issue(client, client.user_id, payload, False))
            if grant == "refresh_token":
                presented = str(payload.get("refresh_token"))
                self.refresh_tokens_used.append(presented)
                owner = self._refresh_tokens.pop(presented, None)
                if owner is None or owner[0] != client.identifier:
                    return _oauth_error(400, "invalid_grant", "The refresh token is invalid")
                for token in [t for t, a in self._access_tokens.items()
                              if a.refresh == presented]:
                    del self._access_tokens[token]  # the previous access token dies with it
                return SimResponse(200, self._issue(client, owner[1], payload, True))
            return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r}")

    def handle_incremental_tickets(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if user.role != "admin":
                return _error(403, "Forbidden", "You do not have access to this page.")
            limited = self._admit_export()
            if limited is not None:
                return limited
            scope = request.arg("support_type_scope", "agent")
            if scope not in ("all", *SUPPORT_TYPES):
                return _error(400, "InvalidValue", "support_type_scope is not valid")
            per_page = request.arg("per_page", "1000") or ""
            if not per_page.isdigit() or not 1 <= int(per_page) <= 1000:
                return _error(400, "InvalidValue", "per_page must be between 1 and 1000")
            now = time.time_ns()
            cutoff = now - int(self.exclude_newest * NS)
            position = self._export_position(request, cutoff)
            if isinstance(position, SimResponse):
                return position
            include_deleted = request.arg("exclude_deleted") != "true"
            rows = sorted(
                (t for t in self.tickets.values()
                 if (t.stamp, t.id) > position and t.stamp <= cutoff
                 and (include_deleted or t.status != "deleted")
                 and scope in ("all", t.support_type)),
                key=lambda t: (t.stamp, t.id),
            )
            page = rows[: int(per_page)]
            after = _encode(page[-1].stamp, page[-1].id) if page else _encode(*position)
            body: dict[str, Any] = {
                "tickets": [self._ticket_json(t) for t in page],
                "after_url": f"{self.url}/api/v2/incremental/tickets/cursor.json?"
                             + urlencode({"cursor": after, "per_page": per_page}),
                "after_cursor": after,
                "before_url": None,
                "before_cursor": None,
                "end_of_stream": len(rows) <= len(page),
            }
            if "comment_count" in (request.arg("include") or "").split(","):
                for item, ticket in zip(body["tickets"], page, strict=True):
                    item["comment_count"] = self._comment_count(ticket)
            self._side_load(request, body, [t.requester_id for t in page])
            return SimResponse(200, body)

    def handle_ticket_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            refused = self._refuse_ticket(ticket_id)
            if refused is not None:
                return refused
            ticket = self.tickets[ticket_id]
            body = {"ticket": self._ticket_json(ticket)}
            self._side_load(request, body, [ticket.requester_id])
            return SimResponse(200, body)

    def handle_ticket_update(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if user.role == "end-user":
                return _error(403, "Forbidden", "You do not have access to this page.")
            refused = self._refuse_ticket(ticket_id)
            if refused is not None:
                return refused
            ticket = self.tickets[ticket_id]
            payload = request.json()
            changes = payload.get("ticket") if isinstance(payload, dict) else None
            if not isinstance(changes, dict):
                return _error(400, "InvalidJSON", "The request body must hold a ticket object")
            if ticket.status == "closed":
                return _error(422, "RecordInvalid", "Status: closed prevents ticket update")
            invalid = self._invalid_update(changes)
            if invalid:
                return _error(422, "RecordInvalid", invalid)
            return SimResponse(200, self._apply_update(ticket, user, changes))

    def handle_ticket_comments(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            refused = self._refuse_ticket(ticket_id)
            if refused is not None:
                return refused
            comments = list(self.tickets[ticket_id].comments)
            if request.arg("sort_order") == "desc":
                comments.reverse()
            body = self._cursor_page(request, comments, ticket_id)
            if isinstance(body, SimResponse):
                return body
            if ticket_id in self.corrupted and not request.arg("page[after]"):
                body["comments"].insert(0, {
                    "id": None, "type": "Comment", "author_id": "someone", "body": 42,
                    "public": "yes", "created_at": "yesterday",
                })
            self._side_load(request, body, [c["author_id"] for c in body["comments"]])
            return SimResponse(200, body)

    def handle_custom_statuses(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if not self.custom_statuses_enabled:
                return _error(403, "Forbidden", "You do not have access to this page.")
            return SimResponse(200, {"custom_statuses": list(self.custom_statuses.values())})

    # ----- internals (callers hold self.lock) ------------------------------------------------
    def _stamp(self) -> int:
        """Nanoseconds now, strictly increasing, so every change sorts after all earlier ones."""
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    def _touch(self, ticket: _Ticket) -> None:
        ticket.stamp = self._stamp()
        ticket.updated_at = _iso(ticket.stamp)

    def _comment_count(self, ticket: _Ticket) -> int:
        if self.comment_count_public_only:
            return sum(1 for c in ticket.comments if c.public)
        return len(ticket.comments)

    def _refuse_ticket(self, ticket_id: int) -> SimResponse | None:
        """The 404 or 403 that a missing, deleted or restricted ticket gets, else None."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None or ticket.status == "deleted":
            return _error(404, "RecordNotFound", "Not found")
        if ticket_id in self.restricted:
            return _error(403, "Forbidden", "You do not have access to this page.")
        return None

    def _live_ticket(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets[ticket_id]
        if ticket.status == "deleted":
            raise KeyError(f"ticket {ticket_id} is deleted")
        return ticket

    def _set_status(self, ticket: _Ticket, status: str, custom_status_id: int | None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if custom_status_id is not None and custom_status_id not in self.custom_statuses:
            raise KeyError(f"no custom status {custom_status_id}")
        category = "solved" if status == "closed" else status
        ticket.status = status
        ticket.custom_status_id = custom_status_id or self._default_status.get(category)

    def _new_comment(
        self, ticket: _Ticket, author_id: int, text: str | None, markup: str | None, *,
        public: bool, via: dict[str, Any], html_only: bool = False,
    ) -> _Comment:
        """Store a comment; like Zendesk, derive the text from HTML or the HTML from text."""
        if text is None:
            text = html_to_text(markup or "")
        if markup is None:
            markup = '<div class="zd-comment" dir="auto"><p>{}</p></div>'.format(
                escape(text).replace("\n", "<br>")
            )
        comment = _Comment(
            next(self._ids), author_id, text, markup, public, via, _iso(self._stamp()),
            next(self._ids), html_only,
        )
        ticket.comments.append(comment)
        return comment

    def _admit(self) -> SimResponse | None:
        """Count the request against the per-minute window; 429 once it is full."""
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60:
            self._window.popleft()
        if self.rate_limit is not None and len(self._window) >= self.rate_limit:
            wait = max(1, math.ceil(self._window[0] + 60 - now))
            response = _error(
                429, "APIRateLimitExceeded", "Number of allowed API requests per minute exceeded"
            )
            response.headers["Retry-After"] = str(wait)
            return response
        self._window.append(now)
        return None

    def _admit_export(self) -> SimResponse | None:
        """The export's own per-minute window, counted after the account's."""
        now = time.monotonic()
        while self._export_window and now - self._export_window[0] >= 60:
            self._export_window.popleft()
        limit = self.export_rate_limit
        if limit is not None and len(self._export_window) >= limit:
            wait = max(1, math.ceil(self._export_window[0] + 60 - now))
            response = _error(429, "APIRateLimitExceeded",
                              "Number of allowed incremental export API requests per minute "
                              "exceeded")
            response.headers["Retry-After"] = str(wait)
            return response
        self._export_window.append(now)
        return None

    def _issue(
        self, client: _OAuthClient, user_id: int, payload: dict[str, Any], refresh: bool
    ) -> dict[str, Any]:
        """A new access token (and, for the refresh grant, the refresh token that replaces the
        one presented), as the grant-type endpoint answers."""
        token = f"zd-access-{secrets.token_hex(12)}"
        renewed = f"zd-refresh-{secrets.token_hex(8)}" if refresh else None
        self._access_tokens[token] = _AccessToken(
            user_id, time.monotonic() + self.token_ttl, client.identifier, renewed)
        self.issued_tokens.append(token)
        body: dict[str, Any] = {
            "access_token": token, "token_type": "bearer",
            "scope": str(payload.get("scope") or "read write"),
            "expires_in": int(self.token_ttl) if float(self.token_ttl).is_integer()
            else self.token_ttl,
        }
        if renewed is not None:
            self._refresh_tokens[renewed] = (client.identifier, user_id)
            body.update(refresh_token=renewed, refresh_token_expires_in=30 * 86400)
        return body

    def _user(self, request: SimRequest) -> _User | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        user_id: int | None = None
        if scheme.lower() == "bearer":
            access = self._access_tokens.get(credentials.strip())
            alive = access is not None and access.expires_at > time.monotonic()
            user_id = access.user_id if access is not None and alive else None
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            login, _, secret = decoded.partition(":")
            if login.endswith("/token"):  # password logins are off, as on new accounts
                user_id = self._api_tokens.get((login.removesuffix("/token"), secret))
        return self.users.get(user_id) if user_id is not None else None

    def _guard(self, request: SimRequest) -> _User | SimResponse:
        """The authenticated user, or the 429/401 answer that ends the request."""
        refused = self._admit()
        if refused is not None:
            return refused
        return self._user(request) or _unauthenticated()

    def _export_position(self, request: SimRequest, cutoff: int) -> tuple[int, int] | SimResponse:
        """Where the export resumes: after the cursor, or at ``start_time``."""
        cursor = request.arg("cursor")
        if cursor:
            decoded = _decode(cursor, 2)
            if decoded is None:
                return _error(400, "InvalidPaginationParameter", "Invalid cursor")
            return decoded[0], decoded[1]
        start = request.arg("start_time")
        if start is None:
            return _error(400, "InvalidValue", "start_time or cursor is required")
        if not start.isdigit():
            return _error(400, "InvalidValue", "start_time must be an integer")
        if int(start) * NS > cutoff:
            return _error(
                400, "InvalidValue",
                f"Too recent start_time. Use a start_time older than {self.exclude_newest:g}s",
            )
        return int(start) * NS, -1

    def _invalid_update(self, changes: dict[str, Any]) -> str | None:
        """Zendesk's 422 reason for an update it refuses, or None.

        Types are checked before lookups: a JSON list or object is not hashable, and a simulator
        crash would answer 500 where Zendesk answers 422.
        """
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            return f"Status: {status} is not valid"
        custom = changes.get("custom_status_id")
        known = isinstance(custom, int) and custom in self.custom_statuses
        if custom is not None and not known:
            return "Custom status is invalid"
        tags = changes.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return "Tags: must be a list of strings"
        comment = changes.get("comment")
        if comment is None:
            return None
        if not isinstance(comment, dict):
            return "Comment: must be an object"
        texts = [comment.get(key) for key in ("body", "html_body") if key in comment]
        if not all(isinstance(t, str) for t in texts) or not any(t.strip() for t in texts):
            return "Comment: cannot be blank"
        if "public" in comment and not isinstance(comment["public"], bool):
            return "Comment: public must be true or false"
        return None

    def _apply_update(
        self, ticket: _Ticket, user: _User, changes: dict[str, Any]
    ) -> dict[str, Any]:
        audit_id = next(self._ids)
        events: list[dict[str, Any]] = []
        comment = changes.get("comment")
        if isinstance(comment, dict):
            author = comment.get("author_id")
            created = self._new_comment(
                ticket, author if isinstance(author, int) and author in self.users else user.id,
                self._render(ticket, comment.get("body")),
                self._render(ticket, comment.get("html_body")),
                public=comment.get("public", True),  # Zendesk's default: public
                via=_via("api"),
            )
            created.audit_id = audit_id
            events.append(self._comment_json(created))
        custom = changes.get("custom_status_id")
        if "status" in changes or custom is not None:
            previous = ticket.status
            category = self.custom_statuses[custom]["status_category"] if custom else None
            self._set_status(ticket, changes.get("status") or category or ticket.status, custom)
            events.append({"id": next(self._ids), "type": "Change", "field_name": "status",
                           "value": ticket.status, "previous_value": previous})
        if "tags" in changes:
            ticket.tags = list(dict.fromkeys(changes["tags"]))
        self._touch(ticket)
        return {
            "ticket": self._ticket_json(ticket),
            "audit": {
                "id": audit_id, "ticket_id": ticket.id, "created_at": ticket.updated_at,
                "author_id": user.id, "metadata": {"system": {}, "custom": {}},
                "via": _via("api"), "events": events,
            },
        }

    def _render(self, ticket: _Ticket, text: Any) -> str | None:
        """``text`` with placeholders expanded as Zendesk's Liquid would: known ones get their
        value, unknown ones nothing; an entity-escaped brace is not a placeholder."""
        if not isinstance(text, str) or not text:
            return None
        values = {"ticket.id": str(ticket.id), "ticket.status": ticket.status,
                  "ticket.title": ticket.subject}

        def value(match: re.Match[str]) -> str:
            self.placeholders_rendered += 1
            return values.get(match.group(1), "")

        return PLACEHOLDER.sub(value, text)

    def _cursor_page(
        self, request: SimRequest, comments: list[_Comment], ticket_id: int
    ) -> dict[str, Any] | SimResponse:
        """Cursor pagination only: offset pagination is legacy, so it is refused, not imitated."""
        size = request.arg("page[size]") or ""
        if not size.isdigit() or not 1 <= int(size) <= 100:
            return _error(400, "InvalidPaginationParameter", "page[size] must be 1 to 100")
        start = 0
        after = request.arg("page[after]")
        if after:
            decoded = _decode(after, 1)
            ids = [c.id for c in comments]
            if decoded is None or decoded[0] not in ids:
                return _error(400, "InvalidPaginationParameter", "Invalid page[after] cursor")
            start = ids.index(decoded[0]) + 1
        page = comments[start: start + int(size)]
        has_more = start + len(page) < len(comments)
        after_cursor = _encode(page[-1].id) if page else None
        before_cursor = _encode(page[0].id) if page else None
        base = f"{self.url}/api/v2/tickets/{ticket_id}/comments.json?"
        return {
            "comments": [self._comment_json(c) for c in page],
            "meta": {"has_more": has_more, "after_cursor": after_cursor,
                     "before_cursor": before_cursor},
            "links": {
                "next": base + urlencode({"page[size]": size, "page[after]": after_cursor})
                if has_more else None,
                "prev": base + urlencode({"page[size]": size, "page[before]": before_cursor})
                if start and page else None,
            },
        }

    def _side_load(self, request: SimRequest, body: dict[str, Any], user_ids: list[int]) -> None:
        if "users" in (request.arg("include") or "").split(","):
            body["users"] = [
                self._user_json(self.users[user_id])
                for user_id in dict.fromkeys(user_ids) if user_id in self.users
            ]

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "id": user.id, "url": f"{self.url}/api/v2/users/{user.id}.json", "name": user.name,
            "email": user.email, "role": user.role, "active": True,
            "created_at": user.created_at,
        }

    def _ticket_json(self, ticket: _Ticket) -> dict[str, Any]:
        first = ticket.comments[0] if ticket.comments else None
        return {
            "id": ticket.id,
            "url": f"{self.url}/api/v2/tickets/{ticket.id}.json",
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": first.text if first else "",
            "status": ticket.status,
            "custom_status_id": ticket.custom_status_id,
            "type": None,
            "priority": None,
            "requester_id": ticket.requester_id,
            "submitter_id": ticket.requester_id,
            "assignee_id": None,
            "group_id": ticket.group_id,
            "brand_id": ticket.brand_id,
            "organization_id": None,
            "tags": list(ticket.tags),
            "via": ticket.via,
            "is_public": any(c.public for c in ticket.comments),
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
            "generated_timestamp": ticket.stamp // NS,
        }

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        bodies: dict[str, Any] = {"html_body": comment.markup}
        if not comment.html_only:
            bodies.update(body=comment.text, plain_body=comment.text)
        return {
            "id": comment.id, "type": "Comment", "author_id": comment.author_id, **bodies,
            "public": comment.public, "attachments": [], "audit_id": comment.audit_id,
            "via": comment.via, "created_at": comment.created_at,
            "metadata": {"system": {}, "custom": {}},
        }

    # ----- the play API of ``connector sandbox`` (see Simulator.seed_ticket) -------------------
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        requester = self.add_user(customer, "end-user", self.play_email(customer))
        return self.create_ticket(requester, body, subject=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            requester = self._live_ticket(ticket_id).requester_id
        return self.add_comment(ticket_id, requester, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        agent = self.play_agent(lambda name, email: self.add_user(name, "agent", email))
        return self.add_comment(ticket_id, agent, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, "solved")
