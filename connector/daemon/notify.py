"""Outbound notifications: engine events become alerts, posted to webhooks off the work path.

The engine calls ``Notifier.on_event`` on its worker threads, so that method only decides
whether an event is worth a message and puts it on a bounded queue; a background thread per
receiver does the HTTP. A slow or dead receiver therefore costs its own queue (full: the alert is
dropped and counted), never a worker, and never another receiver's messages.

Incidents that repeat (Uppzy answering 429/5xx, an adapter refused on every retry, a cursor that
stays put) send one message each, then stay quiet for ``cooldown`` or until the state changes.
Texts name the adapter, ticket and request, never customer text, and pass through redaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

from connector.config import NotificationSettings
from connector.core.durations import format_duration
from connector.core.http import USER_AGENT, parse_retry_after
from connector.core.redact import redact
from connector.store.db import DatabaseError
from connector.store.models import utcnow
from connector.store.status import adapter_states

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Connector-Signature"
EVENT_HEADER = "X-Connector-Event"
MAX_RETRY_WAIT = 60.0

SEVERITY = {
    "draft_posted": "info",
    "turn_failed": "error",
    "low_confidence": "warning",
    "auth_refused": "critical",
    "uppzy_errors": "error",
    "adapter_stale": "warning",
}

OutcomeHook = Callable[[str, str, str], None]
"""Called with (target label, alert kind, "sent" | "failed" | "dropped"): feeds the metrics."""


@dataclass(frozen=True)
class Alert:
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Connector-Signature`` value: receivers recompute it over the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Rules:
    """Turns engine events into alerts for one receiver, with its thresholds and cool-downs.

    Not thread-safe by itself: the notifier feeds it under one lock.
    """

    def __init__(self, settings: NotificationSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.wanted = set(settings.events)
        self._clock = clock
        self._errors: deque[tuple[float, str]] = deque()
        self._quiet_until: dict[str, float] = {}
        self._stale_reported: dict[str, datetime] = {}

    def feed(self, event: str, f: dict[str, Any]) -> Alert | None:
        alert = self._alert_for(event, f)
        return alert if alert is not None and alert.kind in self.wanted else None

    def _alert_for(self, event: str, f: dict[str, Any]) -> Alert | None:
        where = f"{f.get('adapter')} ticket {f.get('ticket_id')}"
        ids = {k: f.get(k) for k in ("adapter", "ticket_id", "session_id", "request_id",
                                     "turn_id")}
        if event == "turn_posted" and f.get("outcome") == "draft":
            return Alert("draft_posted", f"AI draft posted on {where} "
                         f"({f.get('kind')} {f.get('posted_id')}).", ids)
        if event == "turn_failed":
            then = " The fallback note is posted instead." if f.get("fallback") else ""
            return Alert("turn_failed", f"No AI answer for {where}: {f.get('reason')}.{then}",
                         {**ids, "reason": f.get("reason"), "fallback": bool(f.get("fallback"))})
        if event == "turn_answered" and f.get("low_confidence"):
            level = f.get("confidence_level") or "n/a"
            return Alert("low_confidence", f"Uppzy's answer for {where} is below "
                         f"draft.min_confidence (confidence {level}); it was not drafted.",
                         {**ids, "confidence_level": f.get("confidence_level")})
        if event == "uppzy_refused" and self._incident("auth:uppzy"):
            return Alert("auth_refused", f"Uppzy refused access: {f.get('reason')}. The "
                         "connector stops until uppzy.api_key or the plan is fixed.",
                         {"system": "uppzy", "reason": f.get("reason")})
        if event == "adapter_paused" and self._incident(f"auth:{f.get('adapter')}"):
            return Alert("auth_refused", f"Adapter {f.get('adapter')} is paused: the helpdesk "
                         f"answered HTTP {f.get('status')} ({f.get('reason')}). It retries "
                         "every few minutes until its credentials are fixed.",
                         {"system": f.get("adapter"), "adapter": f.get("adapter"),
                          "reason": f.get("reason"), "status": f.get("status")})
        if event == "http_call" and f.get("client") == "uppzy":
            return self._uppzy_error(str(f.get("outcome")))
        return None

    def _uppzy_error(self, outcome: str) -> Alert | None:
        """``error_threshold`` or more 429/5xx answers within ``error_window``: one alert."""
        if "uppzy_errors" not in self.wanted or (outcome != "429" and not outcome.startswith("5")):
            return None
        now = self._clock()
        window = self.settings.error_window
        self._errors.append((now, "429" if outcome == "429" else "5xx"))
        while self._errors and self._errors[0][0] <= now - window:
            self._errors.popleft()
        if len(self._errors) < self.settings.error_threshold or not self._incident("uppzy"):
            return None
        counts = Counter(kind for _, kind in self._errors)
        return Alert("uppzy_errors", f"Uppzy answered {len(self._errors)} errors in the last "
                     f"{format_duration(window)}: {counts['429']} rate limited (429), "
                     f"{counts['5xx']} server errors (5xx). Turns wait and retry.",
                     {"rate_limited": counts["429"], "server_errors": counts["5xx"],
                      "window_seconds": window})

    def stale(self, adapter: str, since: datetime, interval: float, last_ok: datetime | None,
              now: datetime) -> Alert | None:
        """Once per cursor position: re-armed when the cursor moves again."""
        if "adapter_stale" not in self.wanted:
            return None
        age = (now - since).total_seconds()
        if age < self.settings.stale_intervals * interval or \
                self._stale_reported.get(adapter) == since:
            return None
        self._stale_reported[adapter] = since
        last = "never" if last_ok is None else \
            f"{format_duration((now - last_ok).total_seconds())} ago"
        return Alert("adapter_stale", f"Adapter {adapter}: the poll cursor has not moved for "
                     f"{format_duration(age)} ({age / interval:.0f} poll intervals); last "
                     f"successful poll: {last}.",
                     {"adapter": adapter, "cursor_age_seconds": round(age, 1),
                      "last_poll_ok_at": last_ok.isoformat() if last_ok else None})

    def _incident(self, key: str) -> bool:
        """True when ``key`` is not cooling down; starts its cool-down."""
        now = self._clock()
        if now < self._quiet_until.get(key, float("-inf")):
            return False
        self._quiet_until[key] = now + self.settings.cooldown
        return True


@dataclass(frozen=True)
class _Delivery:
    kind: str
    body: bytes
    headers: dict[str, str]


class Channel:
    """One receiver: its rules, its bounded queue and the thread that posts to it."""

    def __init__(self, label: str, settings: NotificationSettings, instance: str,
                 on_outcome: OutcomeHook, clock: Callable[[], float]) -> None:
        self.label = label
        self.settings = settings
        self.rules = Rules(settings, clock)
        self._instance = instance
        self._on_outcome = on_outcome
        self._queue: queue.Queue[_Delivery] = queue.Queue(maxsize=settings.queue_size)
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=f"notify-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, alert: Alert) -> None:
        """Queue without waiting; a full queue drops the alert (and counts it)."""
        if self._closing.is_set():
            return
        try:
            self._queue.put_nowait(self._encode(alert))
        except queue.Full:
            self._on_outcome(self.label, alert.kind, "dropped")
            if not self._dropping:
                self._dropping = True
                log.warning("notifications to %s are backing up; dropping new ones until it "
                            "answers again", self.label)

    def close(self) -> None:
        self._closing.set()

    def join(self, deadline: float) -> None:
        """Wait until the queue is delivered or ``deadline`` (monotonic) passes, then abandon."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            log.warning("notifications to %s: %d not delivered at shutdown", self.label,
                        self._queue.qsize() + 1)

    def _encode(self, alert: Alert) -> _Delivery:
        text = redact(alert.text)
        if self.settings.format == "slack":
            body = json.dumps({"text": f"connector {self._instance}: {text}"}).encode()
        else:
            body = json.dumps({
                "event": alert.kind,
                "severity": SEVERITY[alert.kind],
                "text": text,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "instance": self._instance,
                "data": {k: redact(v) if isinstance(v, str) else v
                         for k, v in alert.data.items()},
            }, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   EVENT_HEADER: alert.kind}
        if self.settings.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.settings.secret.get_secret_value(), body)
        return _Delivery(alert.kind, body, headers)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._abort.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._closing.is_set():
                        return
                    continue
                outcome = "sent" if self._deliver(session, item) else "failed"
                self._on_outcome(self.label, item.kind, outcome)

    def _deliver(self, session: requests.Session, item: _Delivery) -> bool:
        attempt = 0
        while True:
            attempt += 1
            why, retryable, retry_after = self._post(session, item)
            if why is None:
                self._dropping = False
                return True
            if not retryable or attempt > self.settings.retries:
                log.warning("notification %s to %s not delivered after %d attempt(s): %s",
                            item.kind, self.label, attempt, why)
                return False
            delay = max(retry_after or 0.0, self.settings.backoff * 2 ** (attempt - 1))
            if self._abort.wait(min(MAX_RETRY_WAIT, delay)):
                return False

    def _post(self, session: requests.Session, item: _Delivery
              ) -> tuple[str | None, bool, float | None]:
        """One attempt: (why it failed or None, whether to retry, the receiver's Retry-After)."""
        timeout = self.settings.timeout
        try:
            resp = session.post(self.settings.url.get_secret_value(), data=item.body,
                                headers=item.headers, timeout=(min(timeout, 3.0), timeout),
                                allow_redirects=False)
        except requests.RequestException as exc:
            return type(exc).__name__, True, None  # its text would show the URL, maybe secret
        if resp.status_code < 300:
            return None, False, None
        # Any other 4xx is the receiver refusing this message: repeating it changes nothing.
        retryable = resp.status_code == 429 or resp.status_code >= 500
        return (f"HTTP {resp.status_code}", retryable,
                parse_retry_after(resp.headers.get("Retry-After")))


class Notifier:
    """The engine listener for notifications; ``check_stale`` is called by the scheduler."""

    def __init__(self, targets: list[NotificationSettings], engine: Runtime, *,
                 on_outcome: OutcomeHook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.channels = [
            Channel(s.name or f"notifications[{i}]", s, engine.instance_id,
                    on_outcome or (lambda *_: None), clock)
            for i, s in enumerate(targets)
        ]
        self._lock = threading.Lock()
        self._started_at = utcnow()

    def start(self) -> Notifier:
        for channel in self.channels:
            channel.start()
        return self

    def stop(self, flush: float = 2.0) -> None:
        """Deliver what is queued for up to ``flush`` seconds (so an alert raised just before
        the daemon stops, such as Uppzy refusing the key, still goes out), then give up."""
        deadline = time.monotonic() + flush
        for channel in self.channels:
            channel.close()
        for channel in self.channels:
            channel.join(deadline)

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        with self._lock:
            alerts = [(c, c.rules.feed(event, fields)) for c in self.channels]
        for channel, alert in alerts:
            if alert is not None:
                channel.offer(alert)

    def check_stale(self, now: datetime | None = None) -> None:
        """Alert on adapters whose cursor has not moved for ``stale_intervals`` poll intervals.

        An adapter that never moved its cursor counts from when this notifier started.
        """
        now = now or utcnow()
        try:
            states = adapter_states(self.engine.db)
        except DatabaseError as exc:
            log.warning("stale-cursor check skipped: database read failed: %s",
                        type(exc).__name__)
            return
        for name, adapter in self.engine.adapters.items():
            state = states.get(name)
            moved = state.cursor_moved_at if state else None
            since = max(moved, self._started_at) if moved else self._started_at
            last_ok = state.last_poll_ok_at if state else None
            with self._lock:
                alerts = [(c, c.rules.stale(name, since, adapter.settings.poll_interval,
                                            last_ok, now)) for c in self.channels]
            for channel, alert in alerts:
                if alert is not None:
                    channel.offer(alert)
