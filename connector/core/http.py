"""The one HTTP client every remote call goes through.

It owns what every integration gets wrong once: timeouts on every call, classification of
failures into typed errors, bounded retries with jittered exponential backoff that honour
``Retry-After``, the rule that a non-idempotent call is repeated only when the server provably
never saw it, and the rule that secrets and customer text never reach a log line.

Long waits are not slept here: when the server asks for more than ``max_inline_wait`` seconds the
error is raised with ``retry_after`` set, so the engine can park the work item and move on.
"""

from __future__ import annotations

import codecs
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import requests.utils
import urllib3
from urllib3.exceptions import NewConnectionError

from connector import __version__
from connector.core.errors import (
    MalformedResponse,
    RateLimited,
    RemoteError,
    TransportError,
    error_for_status,
)
from connector.core.http_headers import install as install_header_parser
from connector.core.redact import redact

log = logging.getLogger(__name__)

USER_AGENT = f"uppzy-helpdesk-connector/{__version__}"

CallObserver = Callable[[str, str, str, float], None]
"""Called after every attempt with (client name, endpoint label, outcome, seconds).

The outcome is the status code as text ("200", "429") or "timeout"/"transport"."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how patiently, a call is repeated inline."""

    attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_inline_wait: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given 1-based attempt number."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


@dataclass
class Response:
    """What callers need of a response: status, parsed JSON (or None), headers, raw text."""

    status: int
    data: Any
    headers: Mapping[str, str]
    text: str = field(repr=False, default="")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def header_retry_after(name: str) -> Callable[[Mapping[str, str]], float | None]:
    """For vendors that say how long to wait in their own header instead of ``Retry-After``."""

    def seconds(headers: Mapping[str, str]) -> float | None:
        return parse_retry_after(headers.get(name))

    return seconds


def _error_text(body: Any, text: str) -> str:
    """The server's own reason, from the usual error shapes, shortened and redacted.

    A short code with a description beside it (Zendesk's ``{"error": "RecordInvalid",
    "description": "Record validation errors", "details": {...}}``) keeps all three: the code
    alone does not say what to fix.
    """
    detail: Any = None
    if isinstance(body, dict):
        for key in ("error", "message", "description", "errors", "detail", "title"):
            if body.get(key):
                detail = body[key]
                break
        if isinstance(detail, str) and isinstance(body.get("description"), str) and \
                body["description"] != detail:
            detail = f"{detail}: {body['description']}"
            if body.get("details"):
                detail = f"{detail} ({json.dumps(body['details'], sort_keys=True)})"
        elif isinstance(detail, dict):
            detail = detail.get("message") or detail.get("title") or json.dumps(detail)
        elif isinstance(detail, list):
            detail = "; ".join(
                str(d.get("message", d)) if isinstance(d, dict) else str(d) for d in detail
            )
    elif isinstance(body, list) and body:
        detail = "; ".join(str(x) for x in body)
    if detail is None:
        detail = text
    return redact(" ".join(str(detail).split())[:300])


class _Way:
    """How requests reach one host: its own connection pool, called directly (a pool manager
    in front parsed the URL and looked the pool up again on every call, a sixth of urllib3's
    CPU per request), or a proxy's manager, which needs the whole URL."""

    def __init__(self, via: urllib3.HTTPConnectionPool | urllib3.ProxyManager) -> None:
        self._via = via

    def send(self, method: str, url: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        if isinstance(self._via, urllib3.ProxyManager):
            return self._via.urlopen(method, url, retries=False, redirect=False, **kw)
        parts = urlsplit(url)
        target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
        return self._via.urlopen(method, target, retries=False, redirect=False,
                                 assert_same_host=False, **kw)

    def close(self) -> None:
        if isinstance(self._via, urllib3.ProxyManager):
            self._via.clear()
        else:
            self._via.close()


class HttpClient:
    """A connection pool bound to one remote system.

    ``auth_headers`` is called before every attempt so adapters with expiring tokens can refresh
    them; ``on_auth_failure`` is called once on a 401 with the headers that were refused and may
    refresh credentials, after which the request is tried once more.

    ``rate_families`` maps endpoint labels to a vendor's separately limited endpoint family: a 429
    there closes only that family's gate, so one endpoint's own limit (Zendesk's incremental
    export: 10 a minute) never holds back unrelated calls. Every other 429 closes the account
    gate, which the family's calls respect as well.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        auth_headers: Callable[[], Mapping[str, str]] | None = None,
        on_auth_failure: Callable[[Mapping[str, str]], bool] | None = None,
        retry_after_from: Callable[[Mapping[str, str]], float | None] | None = None,
        observer: CallObserver | None = None,
        rate_families: Mapping[str, str] | None = None,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._auth_headers = auth_headers
        self._on_auth_failure = on_auth_failure
        self._retry_after_from = retry_after_from
        self.observer = observer
        self._sleep = sleep
        self._gate_lock = threading.Lock()
        self._families = dict(rate_families or {})
        # Per gate ("" is the account), the monotonic time before which the server asked for
        # silence.
        self._not_before: dict[str, float] = {}
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json",
                         "Accept-Encoding": "gzip, deflate", **(headers or {})}
        # urllib3 directly: requests cost three times as much CPU per call (hooks, cookie jars,
        # a re-read of proxy variables and ~/.netrc each time) for nothing this client uses.
        # What it did read from the environment is read here, once per host.
        self._tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": os.environ.get(
            "REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()}
        self._pool_size = pool_size
        install_header_parser()  # the same headers, a sixth of the CPU (core/http_headers.py)
        self._ways: dict[str, _Way] = {}  # scheme://host -> the way there

    def close(self) -> None:
        for way in self._ways.values():
            way.close()
        self._ways.clear()

    def resize_pool(self, pool_size: int) -> None:
        """Keep up to ``pool_size`` idle connections per host from now on (connections open
        now are let go; call this before traffic starts)."""
        self.close()
        self._pool_size = pool_size

    def _way_for(self, url: str) -> _Way:
        """The host's own connection pool, or a proxy's, as the environment's proxy settings
        say (no_proxy honoured) for this URL's host; decided once per host."""
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        way = self._ways.get(host)
        if way is None:
            proxy = requests.utils.get_environ_proxies(url).get(parts.scheme)
            way = self._ways[host] = _Way(
                urllib3.ProxyManager(proxy, num_pools=2, maxsize=self._pool_size, **self._tls)
                if proxy else urllib3.connection_from_url(
                    url, maxsize=self._pool_size, **(self._tls if parts.scheme == "https"
                                                     else {})))
        return way

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        read_timeout: float | None = None,
        expect_json: bool = True,
        ok_statuses: tuple[int, ...] = (),
        fenced: bool = False,
    ) -> Response:
        """Send one logical request, retrying inline within the policy.

        ``idempotent`` defaults to True for GET/HEAD/PUT/DELETE. A non-idempotent call is repeated
        only on 429 (the server refused it, so nothing was created) and when the connection could
        not even be opened. A ``fenced`` call (a side effect whose claim was confirmed just
        before it) is sent at most once and never waits inline: the caller's claim could expire
        during any wait, and another instance then sends the same thing; its own backoff
        re-claims and re-confirms instead.
        """
        label = endpoint or f"{method} {path.split('?')[0]}"
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        url = self.url(path)
        timeout = (self.timeouts.connect, read_timeout or self.timeouts.read)
        auth_retried = False
        attempt = 0
        while True:
            attempt += 1
            sent: Mapping[str, str] = {}
            try:
                self._wait_for_gate(label, inline=not fenced)
                sent = self._auth_headers() if self._auth_headers else {}
                return self._attempt(
                    method, url, label, params, json_body, data, {**sent, **(headers or {})},
                    timeout, expect_json, ok_statuses,
                )
            except RemoteError as exc:
                if isinstance(exc, RateLimited) and exc.retry_after and exc.status == 429:
                    self._close_gate(label, exc.retry_after)
                if exc.status == 401 and self._on_auth_failure and not auth_retried:
                    auth_retried = True
                    if self._on_auth_failure(sent):
                        attempt -= 1
                        continue
                if fenced or not self._should_retry(exc, idempotent) \
                        or attempt >= self.retry.attempts:
                    raise
                self._pause_before_retry(exc, label, attempt)

    def _pause_before_retry(self, exc: RemoteError, label: str, attempt: int) -> None:
        """Sleep before the next attempt; re-raise ``exc`` when the wait is too long to hold a
        worker (with ``retry_after`` set, the caller parks the item until then)."""
        delay = self.retry.backoff(attempt)
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        if delay > self.retry.max_inline_wait:
            exc.retry_after = delay
            raise exc
        log.debug("%s %s: %s, retry %d in %.2fs", self.name, label, type(exc).__name__,
                  attempt, delay)
        self._sleep(delay)

    def _close_gate(self, label: str, seconds: float) -> None:
        """A 429's ``Retry-After`` binds the whole client (rate limits are per account), unless
        the endpoint belongs to a family with a limit of its own: then only that family."""
        gate = self._families.get(label, "")
        with self._gate_lock:
            self._not_before[gate] = max(self._not_before.get(gate, 0.0),
                                         time.monotonic() + seconds)

    def _wait_for_gate(self, label: str, *, inline: bool = True) -> None:
        gates = {"", self._families.get(label, "")}
        with self._gate_lock:
            wait = max(self._not_before.get(gate, 0.0) for gate in gates) - time.monotonic()
        if wait <= 0:
            return
        if not inline or wait > self.retry.max_inline_wait:
            raise RateLimited(f"{self.name} {label}: waiting for Retry-After", status=429,
                              endpoint=label, retry_after=wait)
        self._sleep(wait)

    @staticmethod
    def _should_retry(exc: RemoteError, idempotent: bool) -> bool:
        if isinstance(exc, RateLimited):
            return True
        if isinstance(exc, TransportError) and not exc.sent:
            return True
        return idempotent and exc.retryable

    def _attempt(
        self,
        method: str,
        url: str,
        label: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        timeout: tuple[float, float],
        expect_json: bool,
        ok_statuses: tuple[int, ...],
    ) -> Response:
        merged = {**self._headers, **(headers or {})}
        started = time.monotonic()
        resp = self._send(method, _with_query(url, params), label,
                          _encode_body(json_body, data, merged), merged, timeout, started)
        status = resp.status
        elapsed = self._observe(label, str(status), started)
        text = resp.data.decode(_charset(resp.headers), errors="replace")
        body: Any = None
        parse_error = False
        if text.strip():
            try:
                body = json.loads(text)
            except ValueError:
                parse_error = True
        log.debug("%s %s %s -> %d in %.3fs", self.name, method, label, status, elapsed)
        if status < 300 or status in ok_statuses:
            if parse_error and expect_json:
                raise MalformedResponse(
                    f"{self.name} {label}: response is not JSON", status=status, endpoint=label,
                )
            return Response(status, body, resp.headers, text)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if retry_after is None and self._retry_after_from is not None:
            retry_after = self._retry_after_from(resp.headers)
        cls = error_for_status(status)
        where = f" at {_where(url)}" if status in (404, 405, 410) else ""
        raise cls(
            f"{self.name} {label}: HTTP {status}{where}",
            status=status,
            detail=_error_text(body, text),
            endpoint=label,
            retry_after=retry_after,
        )

    def _send(
        self, method: str, url: str, label: str, body: Any, headers: dict[str, str],
        timeout: tuple[float, float], started: float,
    ) -> urllib3.BaseHTTPResponse:
        """One request on the wire; every failure without an HTTP answer becomes a
        ``TransportError`` that says whether the request may have reached the server."""
        try:
            return self._way_for(url).send(
                method, url, body=body, headers=headers,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
        except urllib3.exceptions.NewConnectionError as exc:  # refused, unresolvable
            self._observe(label, "transport", started)
            raise TransportError(f"{self.name} {label}: connection refused by {_host(url)}",
                                 sent=False, endpoint=label) from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            self._observe(label, "timeout", started)
            raise TransportError(f"{self.name} {label}: connect timeout to {_host(url)}",
                                 sent=False, endpoint=label) from exc
        except urllib3.exceptions.TimeoutError as exc:
            self._observe(label, "timeout", started)
            raise TransportError(f"{self.name} {label}: read timeout", sent=True,
                                 endpoint=label, timed_out=True) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._observe(label, "transport", started)
            sent = not _never_connected(exc)
            raise TransportError(
                f"{self.name} {label}: connection {'lost' if sent else 'refused'}", sent=sent,
                endpoint=label,
            ) from exc

    def _observe(self, label: str, outcome: str, started: float) -> float:
        elapsed = time.monotonic() - started
        if self.observer is not None:
            self.observer(self.name, label, outcome, elapsed)
        return elapsed


def _host(url: str) -> str:
    """``host:port`` of a URL, the port spelled out: "connection refused" needs both."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _where(url: str) -> str:
    """The URL tried, without query or credentials: a 404 usually means a wrong base URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{_host(url)}{parts.path}"


def _with_query(url: str, params: Mapping[str, Any] | None) -> str:
    """The URL with ``params`` appended as requests would: None values dropped, lists
    repeated."""
    if not params:
        return url
    query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
    if not query:
        return url
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"


def _encode_body(json_body: Any, data: Any, headers: dict[str, str]) -> bytes | None:
    """The request body; sets its Content-Type unless the caller chose one."""
    if json_body is not None:
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(json_body, allow_nan=False).encode()
    if data is None:
        return None
    if isinstance(data, Mapping):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode(list(data.items()), doseq=True).encode()
    return data.encode() if isinstance(data, str) else bytes(data)


def _charset(headers: Mapping[str, str]) -> str:
    """The response's declared charset; JSON without one is UTF-8."""
    content_type = headers.get("Content-Type") or ""
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"').lower()
            try:
                codecs.lookup(charset)
            except LookupError:
                return "utf-8"
            return charset
    return "utf-8"


def _never_connected(exc: BaseException) -> bool:
    """True when the chain of causes shows the TCP connection was never established."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) \
            else None
        current = nested or current.__cause__ or current.__context__
    return False
