"""The conformance driver for django-helpdesk, against the session's real server (``djhd_fixture``).

The connector works as the seeded staff user ``agent`` (with its DRF token); the human staff
around the ticket are ``staffer``, so the connector's own notes can be told from theirs. The
customer opens tickets through the public web form or by e-mail and writes again by e-mail,
which is all django-helpdesk offers a customer.

django-helpdesk never rate-limits and never serves broken JSON, but proxies in front of real
installations do; the adapter reaches it through ``DjhdFaultProxy``, which adds those faults on
demand and passes everything else through unchanged.

The adapter runs with ``overlap: 2s`` and ``sweep_interval: 0s`` here: this server commits a
follow-up within milliseconds of dating it (mail goes to files), and the suite expects status
changes without a follow-up (merge, delete, a move out of sight) in the very next poll. One
server serves the whole session, so a pass of the feed with the suite's two-item pages would
otherwise re-read minutes of other tests' follow-ups.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from djhd_fixture import ADMIN, AGENT, DjhdServer, djhd_server_module

from adapters.simulation import SimRequest, SimResponse, Simulator
from adapters.text import html_to_text
from connector.testing.conformance import SimulatorRateLimits

HIDDEN_QUEUE = djhd_server_module.HIDDEN_QUEUE
RESOLVED, REOPENED = 3, 2

_TICKET = re.compile(r"^tickets/(\d+)/$")
_PASSED_HEADERS = ("Content-Type",)


class DjhdFaultProxy(Simulator):
    """A pass-through to django-helpdesk's API with the base simulator's faults (429 with
    ``Retry-After``) and call log, plus corrupted conversations for chosen tickets."""

    service = "djhd-proxy"
    routes = [(method, "/api/<path:path>", "api") for method in ("GET", "POST", "PATCH", "PUT")]

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.corrupted: set[str] = set()
        self._session = requests.Session()

    def stop(self) -> None:
        super().stop()
        self._session.close()

    def handle_api(self, request: SimRequest, path: str) -> SimResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k in ("authorization", "content-type", "accept", "accept-language")}
        resp = self._session.request(
            request.method, f"{self.upstream}/api/{path}", params=request.query,
            data=request.body or None, headers=headers, timeout=30, allow_redirects=False,
        )
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.content or None
        ticket = _TICKET.match(path)
        if ticket and ticket.group(1) in self.corrupted and isinstance(body, dict) \
                and body.get("followup_set"):
            body["followup_set"][0] = {"id": None, "date": "yesterday", "comment": 7}
        passed = {name: resp.headers[name] for name in _PASSED_HEADERS if name in resp.headers}
        return SimResponse(resp.status_code, body, passed)


class DjhdDriver(SimulatorRateLimits):
    """Real django-helpdesk behind a fault proxy: the proxy is what the rate limits act on."""

    type_name = "django_helpdesk"
    channels = ("web", "email")
    rate_limit_body = {"detail": "Request was throttled."}  # DRF's throttling answer

    def __init__(self, server: DjhdServer, proxy: DjhdFaultProxy) -> None:
        self.server = server
        self.proxy = self.sim = proxy

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": self.type_name, "url": self.proxy.url,
                "auth": {"token": self.server.agent_token}, "overlap": "2s",
                "sweep_interval": "0s",
                "resolved_statuses": [3, 4, 5, djhd_server_module.PHONE_STATUS], **extra}

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "auth": {"username": AGENT.name, "password": "not-the-password"}}

    def settle(self) -> None:
        """The follow-up list shows every committed follow-up at once."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        subject = f"{subject} {uuid.uuid4().hex[:8]}"
        if (channel or self.channels[0]) == "email":
            return self.server.mail_in(body, subject=subject, html=html)
        return self.server.submit_ticket(subject, body)

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        """By e-mail; an HTML reply comes with the plain-text part mail clients add (quotes as
        ``>`` lines), which is what django-helpdesk keeps."""
        plain = html_to_text(body) if html else None
        self.server.customer_reply(ticket_id, body, html=html, plain=plain)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.server.staff_reply(ticket_id, body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.server.staff_note(ticket_id, body)

    def system_event(self, ticket_id: str, body: str) -> None:
        """Staff put the ticket on hold: django-helpdesk records a follow-up with a title and
        no text (its automatic messages, escalations, need days to pass)."""
        self.server.hold(ticket_id)

    def resolve(self, ticket_id: str) -> None:
        self.server.set_status(ticket_id, RESOLVED)

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        """The test site's own status 6, "Answered by phone", listed in resolved_statuses."""
        self.server.set_status(ticket_id, djhd_server_module.PHONE_STATUS)

    def reopen(self, ticket_id: str) -> None:
        self.server.set_status(ticket_id, REOPENED)

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self.server.delete(ticket_id)
        elif how == "merged":
            target = self.server.submit_ticket(f"Merge target {uuid.uuid4().hex[:8]}", "Target")
            self.server.merge(ticket_id, target)
        else:
            self.server.move(ticket_id, HIDDEN_QUEUE)

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [f["comment"] or "" for f in self.server.followups(ticket_id)
                if f["user"] == self.server.agent_id]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [self.server.customer_view(ticket_id)]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        """Move the ticket to a queue the connector's user has no permission on (per-queue
        staff permissions): the API answers 404 for it from then on."""
        self.server.move(ticket_id, HIDDEN_QUEUE)

    def corrupt_ticket(self, ticket_id: str) -> None:
        """The ticket's first follow-up comes without id and with an unreadable date."""
        self.proxy.corrupted.add(ticket_id)


@contextmanager
def open_djhd_driver(server: DjhdServer) -> Iterator[DjhdDriver]:
    """A driver whose adapters reach ``server`` through a fresh fault proxy; stopped on exit."""
    proxy = DjhdFaultProxy(server.url)
    proxy.start()
    try:
        yield DjhdDriver(server, proxy)
    finally:
        proxy.stop()


__all__ = ["ADMIN", "DjhdDriver", "open_djhd_driver"]
