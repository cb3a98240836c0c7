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

import itertools
import json
from collections import deque
from typing import Any

from adapters.freshdesk.simulator.auth import FreshdeskAuth
from adapters.freshdesk.simulator.limits import FreshdeskLimits
from adapters.freshdesk.simulator.records import _Contact, _Ticket
from adapters.freshdesk.simulator.serialize import FreshdeskJson
from adapters.freshdesk.simulator.ticket_routes import FreshdeskTicketRoutes
from adapters.freshdesk.simulator.tickets import FreshdeskTickets
from adapters.signatures import DEFAULT_SECRET_HEADER, post_webhook
from adapters.simulation import Simulator

__all__ = ["FreshdeskSimulator"]


class FreshdeskSimulator(
    FreshdeskAuth,
    FreshdeskLimits,
    FreshdeskTickets,
    FreshdeskTicketRoutes,
    FreshdeskJson,
    Simulator,
):
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
