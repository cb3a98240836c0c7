"""Prometheus metrics: counters and histograms fed by engine events, gauges read from the store.

Every ``Metrics`` has its own registry, never the process-wide default: tests (and an embedding
application) build several engines in one process, and the default registry refuses a metric
name twice. State gauges (turns by state, cursor age, poll lag) are read from the database at
scrape time instead of being tracked in memory, so they are right straight after a restart and
every instance sharing one PostgreSQL reports the same numbers for them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.store.db import DatabaseError
from connector.store.models import TurnState, utcnow
from connector.store.status import gauges

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ANSWER_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
POLL_COUNT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34)
POST_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

_NUMBERS = re.compile(r"\d+")


def status_class(outcome: str) -> str:
    """``"404"`` -> ``"4xx"``; ``"timeout"`` and ``"transport"`` stay as they are."""
    return f"{outcome[0]}xx" if outcome.isdigit() else outcome


def endpoint_label(endpoint: str) -> str:
    """Bound the label's values: an unnamed call is labelled ``METHOD /path`` by the HTTP client,
    and ids in that path would make one time series per ticket."""
    return _NUMBERS.sub(":id", endpoint) if "/" in endpoint else endpoint


class Metrics:
    """Subscribe ``on_event`` to the engine; serve ``render()`` at ``/metrics``."""

    def __init__(self, engine: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Which instance answers this scrape, when several share one PostgreSQL.
        Info("connector_instance", "This daemon instance", registry=r).info(
            {"instance": engine.instance_id})
        self._uppzy(r)
        self._helpdesks(r)
        self._turns(r)
        self._operations(r)
        r.register(StoreCollector(engine))
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "http_call": self._http_call,
            "poll_ok": self._poll_ok,
            "poll_failed": self._poll_failed,
            "adapter_paused": self._adapter_paused,
            "turn_submitted": self._turn_submitted,
            "turn_answered": self._turn_answered,
            "turn_failed": self._turn_failed,
            "turn_posted": self._turn_posted,
            "session_closed": self._session_closed,
            "feedback_sent": self._feedback_sent,
            "uppzy_refused": self._uppzy_refused,
            "webhook": self._webhook,
            "draft_adopted": lambda f: self.adoption.labels(f["adapter"], f["outcome"]).inc(),
            "drafts_expired": lambda f: self.adoption.labels(f["adapter"], "expired").inc(
                f["count"]),
            "side_effect_repeated": lambda f: self.repeated.labels(f["kind"]).inc(),
            "uppzy_down": lambda _f: self.uppzy_up.set(0),
            "uppzy_recovered": lambda _f: self.uppzy_up.set(1),
        }

    def _uppzy(self, r: CollectorRegistry) -> None:
        """Calls to Uppzy and how long answers take."""
        self.uppzy_requests = Counter(
            "connector_uppzy_requests", "Uppzy HTTP attempts by endpoint and status class",
            ["endpoint", "status_class"], registry=r)
        self.uppzy_seconds = Histogram(
            "connector_uppzy_request_seconds", "Duration of one Uppzy HTTP attempt",
            ["endpoint"], buckets=REQUEST_BUCKETS, registry=r)
        self.uppzy_rate_limited = Counter(
            "connector_uppzy_rate_limited", "Uppzy answers with status 429", ["endpoint"],
            registry=r)
        self.uppzy_timeouts = Counter(
            "connector_uppzy_timeouts", "Uppzy attempts that timed out", ["endpoint"], registry=r)
        self.uppzy_refused = Counter(
            "connector_uppzy_refused", "Times Uppzy refused the key or plan (the daemon stops)",
            registry=r)
        self.answer_seconds = Histogram(
            "connector_answer_seconds", "From submitting a question to having Uppzy's answer",
            ["adapter"], buckets=ANSWER_BUCKETS, registry=r)
        self.status_polls = Histogram(
            "connector_answer_status_polls", "Status polls one async request needed",
            ["adapter"], buckets=POLL_COUNT_BUCKETS, registry=r)

    def _helpdesks(self, r: CollectorRegistry) -> None:
        """Calls to the helpdesks and what their change feeds report."""
        self.adapter_requests = Counter(
            "connector_adapter_requests", "Helpdesk HTTP attempts by endpoint and status class",
            ["adapter", "endpoint", "status_class"], registry=r)
        self.adapter_seconds = Histogram(
            "connector_adapter_request_seconds", "Duration of one helpdesk HTTP attempt",
            ["adapter"], buckets=REQUEST_BUCKETS, registry=r)
        self.polls = Counter(
            "connector_adapter_polls", "Change-feed polls; result is ok or the error class",
            ["adapter", "result"], registry=r)
        self.tickets_seen = Counter(
            "connector_adapter_tickets_seen", "Tickets the change feed reported as changed",
            ["adapter"], registry=r)
        self.paused = Counter(
            "connector_adapter_pauses", "Times an adapter was paused (auth refused)",
            ["adapter", "reason"], registry=r)

    def _turns(self, r: CollectorRegistry) -> None:
        """What happens to customer turns, sessions and feedback."""
        self.submitted = Counter(
            "connector_turns_submitted", "Questions submitted to Uppzy", ["adapter"], registry=r)
        self.answered = Counter(
            "connector_turns_answered", "Answers received", ["adapter", "low_confidence"],
            registry=r)
        self.failed = Counter(
            "connector_turns_failed", "Turns Uppzy gave no usable answer for",
            ["adapter", "fallback"], registry=r)
        self.posted = Counter(
            "connector_drafts_posted", "Drafts and notes posted; outcome draft or fallback",
            ["adapter", "outcome", "kind"], registry=r)
        self.post_seconds = Histogram(
            "connector_post_latency_seconds", "From the customer's message to our posted draft",
            ["adapter"], buckets=POST_BUCKETS, registry=r)
        self.adoption = Counter(
            "connector_draft_adoption", "Posted drafts by what the agent did with them: used, "
            "edited, discarded, or expired without a reply", ["adapter", "outcome"], registry=r)
        self.sessions_closed = Counter(
            "connector_sessions_closed", "Uppzy sessions closed", ["adapter"], registry=r)
        self.feedback = Counter(
            "connector_feedback_sent", "Answer ratings sent to Uppzy", ["adapter", "value"],
            registry=r)

    def _operations(self, r: CollectorRegistry) -> None:
        """Notifications, webhooks, repeated side effects and the Uppzy outage gauge."""
        self.notifications = Counter(
            "connector_notifications", "Outbound notifications; outcome sent, failed or dropped",
            ["target", "event", "outcome"], registry=r)
        self.webhooks = Counter(
            "connector_webhooks", "Helpdesk push webhooks by outcome: accepted, ignored, "
            "duplicate, refused (bad signature) or malformed", ["adapter", "outcome"], registry=r)
        self.repeated = Counter(
            "connector_repeated_side_effects",
            "Remote calls made again because a holder may have made them before recording it "
            "(kill-point table in docs/reliability.md); kind chat, close or feedback",
            ["kind"], registry=r)
        self.uppzy_up = Gauge(
            "connector_uppzy_up", "0 while Uppzy's recent calls all failed (an outage), else 1",
            registry=r)
        self.uppzy_up.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """The engine listener: a few in-memory increments, safe on any worker thread."""
        handler = self._handlers.get(event)
        if handler is not None:
            handler(fields)

    def notification(self, target: str, event: str, outcome: str) -> None:
        self.notifications.labels(target, event, outcome).inc()

    # ----- event handlers ----------------------------------------------------------------------
    def _http_call(self, f: dict[str, Any]) -> None:
        endpoint, outcome = endpoint_label(f["endpoint"]), f["outcome"]
        if f["client"] == "uppzy":
            self.uppzy_requests.labels(endpoint, status_class(outcome)).inc()
            self.uppzy_seconds.labels(endpoint).observe(f["seconds"])
            if outcome == "429":
                self.uppzy_rate_limited.labels(endpoint).inc()
            elif outcome == "timeout":
                self.uppzy_timeouts.labels(endpoint).inc()
        else:
            self.adapter_requests.labels(f["client"], endpoint, status_class(outcome)).inc()
            self.adapter_seconds.labels(f["client"]).observe(f["seconds"])

    def _poll_ok(self, f: dict[str, Any]) -> None:
        self.polls.labels(f["adapter"], "ok").inc()
        self.tickets_seen.labels(f["adapter"]).inc(f["tickets"])

    def _poll_failed(self, f: dict[str, Any]) -> None:
        self.polls.labels(f["adapter"], f["error"]).inc()

    def _adapter_paused(self, f: dict[str, Any]) -> None:
        self.paused.labels(f["adapter"], f["reason"]).inc()

    def _turn_submitted(self, f: dict[str, Any]) -> None:
        self.submitted.labels(f["adapter"]).inc()

    def _turn_answered(self, f: dict[str, Any]) -> None:
        self.answered.labels(f["adapter"], _flag(f["low_confidence"])).inc()
        self.answer_seconds.labels(f["adapter"]).observe(f["seconds"])
        self.status_polls.labels(f["adapter"]).observe(f["polls"])

    def _turn_failed(self, f: dict[str, Any]) -> None:
        self.failed.labels(f["adapter"], _flag(f["fallback"])).inc()

    def _turn_posted(self, f: dict[str, Any]) -> None:
        self.posted.labels(f["adapter"], f["outcome"], f["kind"]).inc()
        self.post_seconds.labels(f["adapter"]).observe(max(0.0, f["seconds"]))

    def _session_closed(self, f: dict[str, Any]) -> None:
        self.sessions_closed.labels(f["adapter"]).inc()

    def _feedback_sent(self, f: dict[str, Any]) -> None:
        self.feedback.labels(f["adapter"], f["value"]).inc()

    def _uppzy_refused(self, _f: dict[str, Any]) -> None:
        self.uppzy_refused.inc()

    def _webhook(self, f: dict[str, Any]) -> None:
        self.webhooks.labels(f["adapter"], f["outcome"]).inc()


def _flag(value: object) -> str:
    return "true" if value else "false"


class StoreCollector(Collector):
    """Gauges read from the database at scrape time; a failing read reports the database down
    instead of failing the whole scrape, so the counters stay visible during the outage."""

    def __init__(self, engine: Runtime) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []  # the metric set depends on the data; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("connector_database_up", "1 when the database answered the scrape")
        try:
            families = self._read(utcnow())
        except DatabaseError as exc:
            log.warning("metrics: database read failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> list[Metric]:
        names = list(self.engine.adapters)
        turns = GaugeMetricFamily("connector_turns", "Turns by state", labels=["adapter", "state"])
        cursor_age = GaugeMetricFamily(
            "connector_adapter_cursor_age_seconds", "Seconds since the poll cursor last moved",
            labels=["adapter"])
        poll_lag = GaugeMetricFamily(
            "connector_adapter_poll_lag_seconds", "Seconds since the last successful poll",
            labels=["adapter"])
        paused = GaugeMetricFamily(
            "connector_adapter_paused", "1 while the adapter is paused", labels=["adapter"])
        read = gauges(self.engine.db)
        counts, states = read.turns, read.adapters
        for adapter in sorted(set(names) | {a for a, _ in counts}):
            for state in TurnState:
                turns.add_metric([adapter, state.value], counts.get((adapter, state.value), 0))
        for name in names:
            row = states.get(name)
            if row is None:
                continue
            if row.cursor_moved_at is not None:
                cursor_age.add_metric([name], (now - row.cursor_moved_at).total_seconds())
            if row.last_poll_ok_at is not None:
                poll_lag.add_metric([name], (now - row.last_poll_ok_at).total_seconds())
            paused.add_metric([name], int(bool(row.paused_until and row.paused_until > now)))
        return [turns, cursor_age, poll_lag, paused]
