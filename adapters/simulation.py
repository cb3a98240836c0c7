"""The base of every simulator: a real HTTP server on 127.0.0.1 with faults and inspection.

Simulators ship with the product so teams can run staging checks without vendor accounts. Each
one subclasses ``Simulator``, declares its routes, and keeps its state in memory behind one lock.
Faults (429 with ``Retry-After``, 5xx, dropped connections, slow answers, non-JSON bodies) can be
set from Python or over HTTP at ``/_sim/faults``; ``/_sim/calls`` tells what was called when.

Helpdesk simulators also implement one small play API (``seed_ticket``, ``customer_reply``,
``agent_reply``, ``resolve``), the same for every vendor, so ``connector sandbox`` can seed them
and a user can act as customer or agent over HTTP at ``/_sim/tickets`` (see ``_control_*``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

log = logging.getLogger(__name__)


TicketRef = int | str
"""A ticket or message id in the play API: a number for most helpdesks, the vendor's own text
id for those that have no numbers (Front)."""


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class SimResponse:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> sent as is; None -> empty
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """One injected misbehaviour, applied to calls whose endpoint name starts with ``endpoint``.

    ``kind``: ``status`` (answer ``status`` with ``body``), ``drop`` (close the connection without
    answering), ``delay`` (sleep ``delay`` seconds, then answer normally). ``times`` counts how
    many calls it hits (None: until ``until``, a monotonic deadline, or until cleared).
    """

    kind: str = "status"
    endpoint: str = ""
    status: int = 503
    retry_after: float | None = None
    body: Any = None
    delay: float = 0.0
    times: int | None = 1
    until: float | None = None
    probability: float = 1.0


@dataclass
class Call:
    endpoint: str
    method: str
    path: str
    at: float  # time.monotonic()
    status: int
    query: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Path and query as received (what a client really sent)."""
        return f"{self.path}?{urlencode(self.query, doseq=True)}" if self.query else self.path


class Simulator:
    """A threaded HTTP server; subclasses list ``routes`` as (method, rule, endpoint name).

    The endpoint name is also the handler: ``handle_<name>(request, **url_args)`` returning a
    ``SimResponse``. Unknown paths get 404 and wrong methods 405, as real APIs do.
    """

    routes: ClassVar[list[tuple[str, str, str]]] = []
    service: ClassVar[str] = "simulator"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self._map = Map(
            [Rule(rule, endpoint=name, methods=[method]) for method, rule, name in self.routes]
            + [
                Rule("/_sim/calls", endpoint="_sim_calls", methods=["GET"]),
                Rule("/_sim/faults", endpoint="_sim_faults", methods=["POST", "DELETE"]),
                Rule("/_sim/state", endpoint="_sim_state", methods=["GET"]),
                Rule("/_sim/tickets", endpoint="_sim_tickets", methods=["POST"]),
                Rule("/_sim/tickets/<ticket_id>/<any(customer_reply, agent_reply, resolve)"
                     ":action>", endpoint="_sim_ticket", methods=["POST"]),
            ],
            strict_slashes=False,
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._play_agent_id: int | None = None

    # ----- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Simulator:
        sim = self

        class Handler(_Handler):
            simulator = sim

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.service}-sim", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, as a server going down would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- faults and inspection -------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def call_count(self, endpoint: str | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.calls if endpoint is None or c.endpoint == endpoint)

    def calls_by_endpoint(self) -> dict[str, int]:
        with self.lock:
            return dict(Counter(c.endpoint for c in self.calls))

    def state(self) -> dict[str, Any]:
        """What a subclass wants to show at ``/_sim/state`` (posted notes, sessions...)."""
        return {}

    def adapter_config(self) -> dict[str, Any]:
        """For helpdesk simulators: the adapter YAML keys (url, auth) that reach this server."""
        return {"url": self.url}

    def _take_fault(self, endpoint: str) -> Fault | None:

        now = time.monotonic()
        with self.lock:
            for fault in list(self.faults):
                if fault.until is not None and now >= fault.until:
                    self.faults.remove(fault)
                    continue
                if not endpoint.startswith(fault.endpoint):
                    continue
                if fault.probability < 1.0 and random.random() >= fault.probability:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # ----- dispatch --------------------------------------------------------------------------
    def dispatch(self, request: SimRequest) -> tuple[str, SimResponse | None]:
        """Route one request; returns (endpoint name, response or None to drop the connection).

        Every vendor answer, injected faults included, then gets ``vendor_headers``.
        """
        endpoint, response = self._route(request)
        if response is not None and not endpoint.startswith("_sim_"):
            with self.lock:
                for name, value in self.vendor_headers(endpoint, request, response).items():
                    response.headers.setdefault(name, value)
        return endpoint, response

    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        """Headers the vendor puts on its answers (rate-limit counters); called under the lock."""
        return {}

    def _route(self, request: SimRequest) -> tuple[str, SimResponse | None]:
        adapter = self._map.bind("localhost")
        try:
            endpoint, args = adapter.match(request.path, method=request.method)
        except NotFound:
            return "not_found", SimResponse(404, {"error": "Not Found"})
        except MethodNotAllowed:
            return "not_allowed", SimResponse(405, {"error": "Method Not Allowed"})
        if endpoint.startswith("_sim_"):
            return endpoint, getattr(self, f"_control_{endpoint[5:]}")(request, **args)
        fault = self._take_fault(endpoint)
        if fault is not None:
            if fault.kind == "drop":
                return endpoint, None
            if fault.kind == "delay":
                time.sleep(fault.delay)
            elif fault.kind == "status":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = _fmt_seconds(fault.retry_after)
                return endpoint, SimResponse(fault.status, fault.body, headers)
        try:
            response = getattr(self, f"handle_{endpoint}")(request, **args)
        except Exception:  # a simulator bug must show up as a 500, as a real server would
            log.exception("%s simulator: %s failed", self.service, endpoint)
            response = SimResponse(500, {"error": "simulator error"})
        return endpoint, response

    def _control_calls(self, request: SimRequest) -> SimResponse:
        return SimResponse(200, {"calls": self.calls_by_endpoint(),
                                 "log": [asdict(c) for c in self.calls[-1000:]]})

    def _control_state(self, request: SimRequest) -> SimResponse:
        return SimResponse(200, self.state())

    def _control_faults(self, request: SimRequest) -> SimResponse:
        if request.method == "DELETE":
            self.clear_faults()
            return SimResponse(200, {"faults": []})
        spec = request.json() or {}
        try:
            fault = Fault(**spec)
        except TypeError as exc:
            return SimResponse(400, {"error": str(exc)})
        if "for_seconds" in request.query:
            fault.until = time.monotonic() + float(request.arg("for_seconds") or 0)
        self.add_fault(fault)
        return SimResponse(201, asdict(fault))

    def _control_tickets(self, request: SimRequest) -> SimResponse:
        """``POST /_sim/tickets`` {"body", "subject"?, "customer"?}: a customer writes in."""
        spec = request.json()
        if not isinstance(spec, dict) or not isinstance(spec.get("body"), str):
            return SimResponse(400, {"error": 'send {"body": "...", "subject": "...", '
                                              '"customer": "..."} (subject, customer optional)'})
        return self._play(spec, lambda: {"ticket_id": self.seed_ticket(
            str(spec.get("customer") or "Sandbox Customer"),
            str(spec.get("subject") or spec["body"][:60]), spec["body"])})

    def _control_ticket(self, request: SimRequest, ticket_id: str | int, action: str
                        ) -> SimResponse:
        """``POST /_sim/tickets/<id>/customer_reply|agent_reply`` {"body"}, or ``.../resolve``.

        Most helpdesks number their tickets, so a numeric id is passed on as a number; others
        (Front's ``cnv_55c8c149``) get their id as it is."""
        if isinstance(ticket_id, str) and ticket_id.isdigit():
            ticket_id = int(ticket_id)
        spec = request.json() or {}
        if not isinstance(spec, dict):
            return SimResponse(400, {"error": "send a JSON object"})
        if action == "resolve":
            def resolve() -> dict[str, Any]:
                self.resolve(ticket_id)
                return {"ticket_id": ticket_id, "resolved": True}
            return self._play(spec, resolve)
        if not isinstance(spec.get("body"), str):
            return SimResponse(400, {"error": 'send {"body": "..."}'})
        reply = self.customer_reply if action == "customer_reply" else self.agent_reply
        return self._play(spec, lambda: {"ticket_id": ticket_id,
                                         "message_id": reply(ticket_id, spec["body"])})

    def _play(self, spec: dict[str, Any], act: Callable[[], dict[str, Any]]) -> SimResponse:
        """Run one play action; what went wrong is a client error, never a traceback. A
        ``helpdesk`` in the request must name this simulator: a command aimed at the wrong
        port changes nothing."""
        wanted = spec.get("helpdesk")
        if wanted is not None and wanted != self.service:
            return SimResponse(409, {"error": f"this is the {self.service} simulator, "
                                              f"not {wanted}'s: check --port"})
        try:
            return SimResponse(201, {"helpdesk": self.service, **act()})
        except NotImplementedError:
            return SimResponse(501, {"error": f"the {self.service} simulator has no tickets"})
        except KeyError as exc:
            return SimResponse(404, {"error": f"no such ticket: {exc}"})
        except ValueError as exc:
            return SimResponse(409, {"error": str(exc)})

    # ----- the play API (helpdesk simulators implement it; used by connector sandbox) ---------
    def seed_ticket(self, customer: str, subject: str, body: str) -> TicketRef:
        """A new customer (named ``customer``) opens a ticket; returns the ticket id."""
        raise NotImplementedError

    def customer_reply(self, ticket_id: TicketRef, body: str) -> TicketRef:
        """The ticket's customer writes again (public, as by mail); returns the message id."""
        raise NotImplementedError

    def agent_reply(self, ticket_id: TicketRef, body: str) -> TicketRef:
        """An agent answers the customer in public; returns the message id."""
        raise NotImplementedError

    def resolve(self, ticket_id: TicketRef) -> None:
        """Mark the ticket as its helpdesk's solved/resolved/closed state."""
        raise NotImplementedError

    def play_agent(self, create: Callable[[str, str], int]) -> int:
        """The one agent the play API answers as, made on first use by ``create(name, email)``
        (it must not be the connector's own user, whose messages the adapters skip)."""
        with self.lock:
            if self._play_agent_id is None:
                self._play_agent_id = create("Sam Agent", "sam.agent@example.com")
            return self._play_agent_id

    @staticmethod
    def play_email(name: str) -> str:
        """A made-up address for a customer of that name (helpdesks want one per person)."""
        local = ".".join(part.lower() for part in name.split() if part.isalnum()) or "customer"
        return f"{local}@example.org"

    def record(self, endpoint: str, request: SimRequest, status: int) -> None:
        if endpoint.startswith("_sim_"):
            return
        with self.lock:
            self.calls.append(Call(endpoint, request.method, request.path, time.monotonic(),
                                   status, request.query))


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Handler(BaseHTTPRequestHandler):
    simulator: ClassVar[Simulator]
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle on, each response would wait
        # for the client's delayed ACK (~40 ms), capping a simulator at ~25 requests/s.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.simulator.lock:
            self.simulator._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.simulator.lock:
            self.simulator._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.simulator.service, *args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        endpoint, response = self.simulator.dispatch(request)
        if response is None:
            self.simulator.record(endpoint, request, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.simulator.record(endpoint, request, response.status)
        payload: bytes
        content_type = "application/json; charset=utf-8"
        if response.body is None:
            payload = b""
        elif isinstance(response.body, bytes):
            payload, content_type = response.body, "text/plain; charset=utf-8"
        elif isinstance(response.body, str):
            payload, content_type = response.body.encode(), "text/plain; charset=utf-8"
        else:
            payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        headers = {"Content-Type": content_type, **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve
