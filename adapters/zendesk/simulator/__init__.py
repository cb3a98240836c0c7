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
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import deque
from typing import Any

from adapters.signatures import post_webhook
from adapters.simulation import Simulator
from adapters.zendesk.simulator.auth import ZendeskAuth
from adapters.zendesk.simulator.export import ZendeskExport
from adapters.zendesk.simulator.limits import ZendeskLimits
from adapters.zendesk.simulator.records import (
    CATEGORIES,
    DEFAULT_TOKEN_TTL,
    _AccessToken,
    _iso,
    _OAuthClient,
    _Ticket,
    _User,
)
from adapters.zendesk.simulator.serialize import ZendeskJson
from adapters.zendesk.simulator.ticket_routes import ZendeskTicketRoutes
from adapters.zendesk.simulator.tickets import ZendeskTickets

__all__ = ["ZendeskSimulator"]


_ENDPOINTS = [
    ("GET", "/api/v2/users/me", "users_me"),
    ("GET", "/api/v2/incremental/tickets/cursor", "incremental_tickets"),
    ("GET", "/api/v2/tickets/<int:ticket_id>", "ticket_show"),
    ("PUT", "/api/v2/tickets/<int:ticket_id>", "ticket_update"),
    ("GET", "/api/v2/tickets/<int:ticket_id>/comments", "ticket_comments"),
    ("GET", "/api/v2/custom_statuses", "custom_statuses"),
]
_OAUTH_ROUTES = [("POST", "/oauth/tokens", "oauth_tokens")]


class ZendeskSimulator(
    ZendeskAuth,
    ZendeskLimits,
    ZendeskTickets,
    ZendeskExport,
    ZendeskTicketRoutes,
    ZendeskJson,
    Simulator,
):
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
