"""The conformance driver for Request Tracker, against the session's real RT (``rt_fixture``).

The connector works as the seeded ``agent`` (with its auth token); the human staff around the
ticket are played by ``root``, so the connector's own comments can be told from theirs. The
customer acts over REST2 as RT's self-service would, or by e-mail through the mail gateway.

RT itself never rate-limits and never serves broken JSON, but the proxies and integrations in
front of and inside real installations do; the adapter reaches RT through ``RTFaultProxy``,
which adds those faults on demand and passes everything else through unchanged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from rt_fixture import AGENT, CUSTOMER, RTServer, rt_server_module

from adapters.simulation import SimRequest, SimResponse, Simulator
from connector.testing.conformance import SimulatorRateLimits, Unsupported

ROOT = rt_server_module.ROOT  # superuser: plays the human staff
HIDDEN_QUEUE = "Vault"  # a queue on which the connector's user has no rights at all


_HISTORY = re.compile(r"^ticket/(\d+)/history$")
_PASSED_HEADERS = ("Location", "Content-Type")


class RTFaultProxy(Simulator):
    """A pass-through to RT's REST2 with the base simulator's faults (429 with ``Retry-After``)
    and call log, plus corrupted histories for chosen tickets."""

    service = "rt-proxy"
    routes = [
        (method, "/REST/2.0/<path:path>", "rest") for method in ("GET", "POST", "PUT", "DELETE")
    ]

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.corrupted: set[str] = set()
        self._session = requests.Session()

    def stop(self) -> None:
        super().stop()
        self._session.close()

    def handle_rest(self, request: SimRequest, path: str) -> SimResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k in ("authorization", "content-type", "accept")}
        resp = self._session.request(
            request.method, f"{self.upstream}/REST/2.0/{path}", params=request.query,
            data=request.body or None, headers=headers, timeout=30, allow_redirects=False,
        )
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.content or None
        history = _HISTORY.match(path)
        if history and history.group(1) in self.corrupted and isinstance(body, dict) \
                and body.get("items") and request.arg("page", "1") == "1":
            body["items"][0] = {"id": None, "Type": 7, "Created": "yesterday", "Creator": "?"}
        passed = {name: resp.headers[name] for name in _PASSED_HEADERS if name in resp.headers}
        return SimResponse(resp.status_code, body, passed)


def _type(html: bool) -> str:
    return "text/html" if html else "text/plain"


def _content(body: str, html: bool) -> dict[str, str]:
    return {"Content": body, "ContentType": _type(html)}


class RTDriver(SimulatorRateLimits):
    """Real RT behind a fault proxy: the proxy is the "simulator" the rate limits act on."""

    type_name = "rt"
    channels = ("web", "email")
    rate_limit_body = {"message": "Too Many Requests"}

    def __init__(self, rt: RTServer, proxy: RTFaultProxy) -> None:
        self.rt = rt
        self.proxy = self.sim = proxy

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": self.type_name, "url": self.proxy.url,
                "auth": {"token": self.rt.agent_token}, **extra}

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "auth": {"username": AGENT.name, "password": "not-the-password"}}

    def settle(self) -> None:
        """RT's transaction search sees every committed transaction at once."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        subject = f"{subject} {uuid.uuid4().hex[:8]}"
        if (channel or self.channels[0]) == "email":
            return self.rt.mail_in(body, subject=subject, html=html)
        return self.rt.create_ticket(subject, body, content_type=_type(html))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.rt.rest("POST", f"ticket/{ticket_id}/correspond", user=CUSTOMER,
                     body=_content(body, html))

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.rt.rest("POST", f"ticket/{ticket_id}/correspond", user=ROOT,
                     body=_content(body, False))

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.rt.rest("POST", f"ticket/{ticket_id}/comment", user=ROOT, body=_content(body, False))

    def system_event(self, ticket_id: str, body: str) -> None:
        """A field change: RT's history shows it as a ``Set`` transaction, never a message."""
        self._update(ticket_id, {"Subject": body})

    def resolve(self, ticket_id: str) -> None:
        self._update(ticket_id, {"Status": "resolved"})

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        raise Unsupported("the test RT runs the default lifecycle; custom lifecycles' inactive "
                          "statuses are the adapter's inactive_statuses setting")

    def reopen(self, ticket_id: str) -> None:
        self._update(ticket_id, {"Status": "open"})

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self._update(ticket_id, {"Status": "deleted"})
        elif how == "merged":
            target = self.rt.create_ticket(f"Merge target {uuid.uuid4().hex[:8]}", "Target")
            self._update(ticket_id, {"MergeInto": int(target)})
        else:
            raise Unsupported("RT answers a ticket moved out of the user's sight with 403, "
                              "which the forbidden_ticket scenario covers")

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [
            t["Content"] for t in self.rt.history(ticket_id, user=ROOT)
            if t["Type"] == "Comment" and t["Creator"] == AGENT.name
        ]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [t["Content"] for t in self.rt.history(ticket_id, user=CUSTOMER)]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        """Move the ticket to a queue the connector's user has no rights on."""
        try:
            self.rt.rest("GET", f"queue/{HIDDEN_QUEUE}", user=ROOT)
        except rt_server_module.RTError:
            self.rt.rest("POST", "queue", user=ROOT, body={"Name": HIDDEN_QUEUE})
        self._update(ticket_id, {"Queue": HIDDEN_QUEUE})

    def corrupt_ticket(self, ticket_id: str) -> None:
        """The ticket's history starts with a transaction without id, type or time."""
        self.proxy.corrupted.add(ticket_id)

    def _update(self, ticket_id: str, changes: dict[str, Any]) -> None:
        """Change the ticket as root; RT reports refusals inside a 200, so they are checked."""
        messages = self.rt.rest("PUT", f"ticket/{ticket_id}", user=ROOT, body=changes)
        refused = [m for m in messages or [] if "denied" in m.lower() or "invalid" in m.lower()]
        if refused:
            raise rt_server_module.RTError(f"RT refused {changes}: {refused}")


@contextmanager
def open_rt_driver(rt: RTServer) -> Iterator[RTDriver]:
    """A driver whose adapters reach ``rt`` through a fresh fault proxy; stopped on exit."""
    proxy = RTFaultProxy(rt.url)
    proxy.start()
    try:
        yield RTDriver(rt, proxy)
    finally:
        proxy.stop()
