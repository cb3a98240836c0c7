"""A small HTTP server for operations: ``/metrics``, ``/healthz``, ``/readyz``, and later webhooks.

It binds 127.0.0.1 by default because metrics name adapters and endpoints, and health is nobody
else's business; exposing it is an explicit ``ops.listen`` choice. Routes are werkzeug rules
mapped to plain functions, so another feature (helpdesk webhooks at ``/webhooks/<adapter>``)
adds a route without touching this module. Every request runs on its own thread: a slow scrape
never delays a probe.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from connector.config import split_listen

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Largest request body accepted (webhook payloads are a few KiB; this bounds memory)."""

REQUEST_TIMEOUT = 10.0
"""A client that stops sending mid-request gives up its thread after this many seconds."""


@dataclass
class OpsRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes  # raw, so a webhook route can verify a signature over the exact bytes


@dataclass
class OpsResponse:
    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None  # default: JSON for a dict, text/plain otherwise

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), self.content_type or "application/json"
        data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, self.content_type or "text/plain; charset=utf-8"


RouteHandler = Callable[..., OpsResponse]
"""``handler(request, **url_args) -> OpsResponse``; url_args come from the rule's ``<...>``."""


class OpsServer:
    """Routes can be added with ``route`` before or after ``start``; ``stop`` closes and joins."""

    def __init__(self, listen: str) -> None:
        self.host, self.port = split_listen(listen)
        self._map = Map(strict_slashes=False)
        self._handlers: dict[str, RouteHandler] = {}
        self._routes_lock = threading.Lock()  # werkzeug's Map is not safe to add to while matching
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def route(self, method: str, rule: str, handler: RouteHandler) -> None:
        """Serve ``method rule`` (a werkzeug rule such as ``/webhooks/<adapter>``)."""
        key = f"{method} {rule}"
        with self._routes_lock:
            self._handlers[key] = handler
            self._map.add(Rule(rule, endpoint=key, methods=[method]))

    def start(self) -> OpsServer:
        """Bind and serve; raises OSError when the address is taken or not ours to bind."""
        ops = self

        class Handler(_Handler):
            server_ops = ops

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            daemon_threads = True

        server = Server((self.host, self.port), Handler)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ops-http", daemon=True)
        self._thread.start()
        log.info("ops endpoint listening on %s (/metrics, /healthz, /readyz)", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def dispatch(self, request: OpsRequest) -> OpsResponse:
        try:
            with self._routes_lock:
                key, args = self._map.bind("localhost").match(request.path, method=request.method)
                handler = self._handlers[key]
        except NotFound:
            return OpsResponse(404, "not found\n")
        except MethodNotAllowed:
            return OpsResponse(405, "method not allowed\n")
        try:
            return handler(request, **args)
        except Exception:
            log.exception("ops endpoint %s failed", key)
            return OpsResponse(500, "internal error\n")


class _Handler(BaseHTTPRequestHandler):
    server_ops: ClassVar[OpsServer]
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ops: " + format, *args)

    def _serve(self) -> None:
        response = self._read_and_dispatch()
        payload, content_type = response.payload()
        self.send_response(response.status)
        for name, value in {"Content-Type": content_type, **response.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_and_dispatch(self) -> OpsResponse:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            return OpsResponse(411, "a Content-Length is required\n")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return OpsResponse(400, "invalid Content-Length\n")
        if length > MAX_BODY:
            self.close_connection = True
            return OpsResponse(413, "request body too large\n")
        parts = urlsplit(self.path)
        return self.server_ops.dispatch(OpsRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        ))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve
