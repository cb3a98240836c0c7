"""An in-memory Zammad served over real HTTP, for tests and ``connector sandbox``.

It follows the documented paths and JSON shapes of the endpoints the adapter uses, and the
behaviours that break naive clients:

- ticket search runs on a search index that lags behind the database (``index_lag``): a change
  is found only once indexed, and a hit is matched and sorted on the *indexed* values while the
  answer shows the ticket as it is now;
- a search the index cannot parse (an unescaped ``:`` in a time, ``*`` which Zammad strips) and a
  page beyond the 10 000-hit window answer 200 with no tickets, as Zammad hides search errors;
- ``per_page`` is capped at 200 without a word, and there is no total count: clients page until
  a page comes back short;
- an article is public unless ``internal: true`` is sent, and a customer's token can only write
  public articles;
- a shared draft touches its ticket, so our own draft brings the ticket back into the search;
- no credentials get 403, wrong ones 401 (with ``X-Failure``), as Zammad answers; so do expired
  ones: an OAuth2 access token lives two hours (Doorkeeper's default, which Zammad's
  configuration keeps), a personal access token until its optional ``expires_at``.

Documents followed (addresses and what each says: docs/adapters/zammad.md): docs.zammad.org
(api/intro, api/ticket, api/ticket/articles, api/ticket/states, api/user-access-token, ...),
admin-docs.zammad.org, and Zammad's source where the documents are silent
(config/initializers/doorkeeper.rb, app/models/token.rb).

Zammad itself documents no API rate limit; ``rate_limit`` stands in for a proxy or the hosted
service throttling, with ``Retry-After`` and ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections import deque
from datetime import datetime
from typing import Any

from adapters.signatures import post_webhook
from adapters.simulation import Simulator
from adapters.zammad.simulator.auth import ZammadAuth
from adapters.zammad.simulator.drafts import ZammadDrafts
from adapters.zammad.simulator.limits import ZammadLimits
from adapters.zammad.simulator.records import (
    DEFAULT_STATES,
    OAUTH_LIFETIME,
    SYSTEM_USER_ID,
    _Group,
    _iso,
    _State,
    _Ticket,
    _User,
)
from adapters.zammad.simulator.search import ZammadSearch
from adapters.zammad.simulator.serialize import ZammadJson
from adapters.zammad.simulator.ticket_routes import ZammadTicketRoutes
from adapters.zammad.simulator.tickets import ZammadTickets

__all__ = ["ZammadSimulator"]


class ZammadSimulator(
    ZammadSearch,
    ZammadAuth,
    ZammadLimits,
    ZammadTickets,
    ZammadDrafts,
    ZammadTicketRoutes,
    ZammadJson,
    Simulator,
):
    """Zammad's REST API v1, the subset the adapter uses, with the state tests inspect.

    ``index_lag``: seconds before a change is visible to ticket search (Zammad: ~1-2 s, more
    under load). ``search_index``: False answers field queries like Zammad without
    Elasticsearch (no hits). ``rate_limit``: requests per minute before 429 (None: unlimited).
    ``groups_need_admin``: True refuses ``/groups`` to agents, as Zammad before 2025 did.
    ``access_token_lifetime``: seconds an OAuth2 access token is accepted after it was added.
    A bot agent with the given API token and OAuth access token exists from the start, as do
    the default states and the group "Users" (shared drafts allowed).
    """

    service = "zammad"
    routes = [
        ("GET", "/api/v1/users/me", "users_me"),
        ("GET", "/api/v1/users/<int:user_id>", "user_show"),
        ("GET", "/api/v1/tickets/search", "tickets_search"),
        ("GET", "/api/v1/tickets/<int:ticket_id>", "ticket_show"),
        ("GET", "/api/v1/ticket_articles/by_ticket/<int:ticket_id>", "articles_by_ticket"),
        ("POST", "/api/v1/ticket_articles", "article_create"),
        ("GET", "/api/v1/ticket_states", "ticket_states"),
        ("GET", "/api/v1/groups/<int:group_id>", "group_show"),
        ("GET", "/api/v1/tags", "ticket_tags"),
        ("GET", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_show"),
        ("PUT", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_update"),
        ("PATCH", "/api/v1/tickets/<int:ticket_id>/shared_draft", "shared_draft_update"),
    ]

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        index_lag: float = 1.0,
        search_index: bool = True,
        rate_limit: int | None = None,
        groups_need_admin: bool = False,
        api_token: str = "zammad-token",
        access_token: str = "zammad-oauth",
        access_token_lifetime: float = OAUTH_LIFETIME,
    ) -> None:
        super().__init__(port, host)
        self.index_lag = index_lag
        self.search_index = search_index
        self.rate_limit = rate_limit
        self.groups_need_admin = groups_need_admin
        self.access_token_lifetime = access_token_lifetime
        self._ids = itertools.count(2)
        self._article_ids = itertools.count(1)
        self._numbers = itertools.count(31001)
        self._last_ms = 0
        self._window: deque[float] = deque()
        self.users: dict[int, _User] = {}
        self.groups: dict[int, _Group] = {}
        self.states: dict[int, _State] = {}
        self.tickets: dict[int, _Ticket] = {}
        self._index: dict[int, dict[str, Any]] = {}
        # (due, sequence, ticket id, document or None for a removal), applied in due order
        self._index_queue: list[tuple[float, int, int, dict[str, Any] | None]] = []
        self._index_seq = itertools.count()
        self._api_tokens: dict[str, tuple[int, datetime | None]] = {}
        self._access_tokens: dict[str, tuple[int, float]] = {}  # user id, monotonic expiry
        now = _iso(self._stamp())
        self.users[SYSTEM_USER_ID] = _User(SYSTEM_USER_ID, "-", "-", "", "", [], now)
        for number, (name, type_id, active) in enumerate(DEFAULT_STATES, start=1):
            self.states[number] = _State(number, name, type_id, active, now)
        self.default_group = self.add_group("Users", shared_drafts=True)
        self.api_token = api_token
        self.bot_user_id = self.add_user("Uppzy Bot", "agent", email="bot@example.com")
        self.add_api_token(self.bot_user_id, api_token)
        self.add_access_token(self.bot_user_id, access_token)

    def send_webhook(
        self, url: str, secret: str, ticket_id: int, *, delivery_id: str | None = None,
    ) -> int:
        """Deliver a trigger's default payload (the ticket and its newest article) to ``url``
        as Zammad does: ``X-Hub-Signature: sha1=<hex HMAC-SHA1>``, a random
        ``X-Zammad-Delivery`` unless ``delivery_id`` redelivers one. Returns the status."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            payload = {"ticket": self._ticket_json(ticket, expand=True), "article":
                       self._article_json(ticket.articles[-1]) if ticket.articles else {}}
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        return post_webhook(url, body, {
            "User-Agent": "Zammad User Agent",
            "X-Zammad-Trigger": "answer customers",
            "X-Zammad-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature": f"sha1={digest}",
        })

    def adapter_config(self) -> dict[str, Any]:
        return {"url": self.url, "auth": {"token": self.api_token}}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "tickets": [
                    {"id": t.id, "state": self.states[t.state_id].name,
                     "articles": len(t.articles), "shared_draft": t.draft is not None}
                    for t in self.tickets.values()
                ],
                "bot_posts": self.posts_by(self.bot_user_id),
            }
