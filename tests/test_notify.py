"""Outbound notifications over real HTTP: a receiver on 127.0.0.1 that checks the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from support import API_KEY

from adapters.simulation import Fault, SimRequest, SimResponse, Simulator
from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import NotificationSettings
from connector.core.errors import ConfigError
from connector.daemon.notify import Notifier
from connector.daemon.ops import Ops, start_ops
from connector.engine.runtime import Runtime
from connector.store.models import AdapterState, utcnow
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]
SECRET = "hook-secret-4c1d"
NO_OPS = {"enabled": False}
GATE_LIMIT = 20.0
TURN = {"adapter": "zd", "ticket_id": "42", "session_id": "zd-42", "request_id": "req_1",
        "turn_id": 7}


class Receiver(Simulator):
    """A webhook receiver that verifies ``X-Connector-Signature`` the way a user's would.

    ``gate`` cleared holds every request until it is set again; a request still held after
    ``GATE_LIMIT`` seconds is noted in ``held_too_long`` (something waited for the receiver).
    """

    routes = [("POST", "/hook", "hook")]
    service = "receiver"

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret
        self.received: list[tuple[dict[str, str], Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.held_too_long = False

    @property
    def hook(self) -> str:
        return f"{self.url}/hook"

    def bodies(self) -> list[Any]:
        with self.lock:
            return [body for _, body in self.received]

    def handle_hook(self, request: SimRequest) -> SimResponse:
        if not self.gate.wait(GATE_LIMIT):
            self.held_too_long = True
        if self.secret is not None:
            mac = hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("x-connector-signature", ""),
                                       f"sha256={mac}"):
                return SimResponse(401, {"error": "bad signature"})
        with self.lock:
            self.received.append((request.headers, json.loads(request.body)))
        return SimResponse(204)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    sim = Receiver(SECRET).start()
    yield sim
    sim.gate.set()
    sim.stop()


def target(receiver: Receiver, **settings: Any) -> dict[str, Any]:
    return {"url": receiver.hook, "secret": SECRET, "backoff": "10ms", **settings}


def sent(ops: Ops, target: str, event: str, outcome: str = "sent") -> float:
    value = ops.metrics.registry.get_sample_value(
        "connector_notifications_total", {"target": target, "event": event, "outcome": outcome})
    return value or 0.0


def test_failures_and_low_confidence_send_signed_json_and_drafts_stay_quiet(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    receiver: Receiver
):
    uppzy.confidence = lambda _session, message: ("low", 0.2) if "fee" in message else \
        ("high", 0.9)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    low = zendesk.create_ticket(customer, "Can you waive the fee?")
    zendesk.create_ticket(customer, "Where is my order?")
    engine = make_engine(ops=NO_OPS, notifications=[target(receiver)],
                         draft={"min_confidence": 0.5})
    ops = start_ops(engine)
    try:
        assert engine.run_once()
        uppzy.add_fault(Fault(endpoint="chat_async", status=400, times=1))
        failed = zendesk.create_ticket(customer, "Why was I charged twice?")
        assert engine.run_once()
    finally:
        ops.stop(flush=5)

    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == ["low_confidence", "turn_failed"]  # no draft_posted
    low_alert, failed_alert = bodies
    assert low_alert["data"]["ticket_id"] == str(low)
    assert low_alert["severity"] == "warning"
    assert failed_alert["data"]["ticket_id"] == str(failed)
    assert failed_alert["data"]["adapter"] == "zd"
    assert failed_alert["data"]["session_id"] == f"zd-{failed}"
    assert failed_alert["data"]["fallback"] is True
    assert f"zd ticket {failed}" in failed_alert["text"]
    assert "fallback note" in failed_alert["text"]
    assert failed_alert["instance"] == engine.instance_id
    raw = json.dumps(bodies)
    assert "charged twice" not in raw and "waive" not in raw  # never customer text
    assert API_KEY not in raw and SECRET not in raw
    assert sent(ops, "notifications[0]", "turn_failed") == 1


def test_a_wrong_secret_is_refused_by_the_receiver_and_not_repeated(
    make_engine: MakeEngine, receiver: Receiver
):
    engine = make_engine(ops=NO_OPS, notifications=[target(receiver, secret="not-the-secret")])
    ops = start_ops(engine)
    engine.emit("turn_failed", **TURN, reason="no answer within answer_timeout", fallback=False)
    ops.stop(flush=5)
    assert receiver.received == []
    assert receiver.call_count("hook") == 1  # a 4xx is final: retrying cannot fix a signature
    assert sent(ops, "notifications[0]", "turn_failed", "failed") == 1


def test_slack_mode_posts_text_for_drafts_once_enabled(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    with Receiver(secret=None) as slack:
        customer = zendesk.add_user("C", "end-user", "c@example.org")
        tid = zendesk.create_ticket(customer, "Where is my order?")
        engine = make_engine(ops=NO_OPS, notifications=[{
            "name": "slack", "url": slack.hook, "format": "slack", "events": ["draft_posted"]}])
        ops = start_ops(engine)
        assert engine.run_once()
        ops.stop(flush=5)
        [(headers, body)] = slack.received
    assert list(body) == ["text"]
    assert f"AI draft posted on zd ticket {tid}" in body["text"]
    assert "x-connector-signature" not in headers
    assert sent(ops, "slack", "draft_posted") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slow_and_dead_receivers_never_hold_up_the_pipeline(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, receiver: Receiver,
    caplog: pytest.LogCaptureFixture
):
    dead = f"http://127.0.0.1:{closed_port()}/services/T0/B0/hook-token-93ab"
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    for i in range(3):
        zendesk.create_ticket(customer, f"Question {i}?")
    engine = make_engine(ops=NO_OPS, notifications=[
        target(receiver, name="slow", events=["draft_posted"], queue_size=1, timeout="60s"),
        {"name": "dead", "url": dead, "format": "slack", "events": ["draft_posted"],
         "retries": 2, "backoff": "10ms"},
    ])
    ops = start_ops(engine)
    receiver.gate.clear()  # the slow receiver answers nothing until the pass is over
    try:
        with caplog.at_level(logging.DEBUG):
            assert engine.run_once()
            assert receiver.received == []
            receiver.gate.set()
            ops.stop(flush=10)
    finally:
        receiver.gate.set()

    assert not receiver.held_too_long  # the pass finished without waiting for the receiver
    delivered = sent(ops, "slow", "draft_posted")
    dropped = sent(ops, "slow", "draft_posted", "dropped")
    assert dropped >= 1  # queue of one: the overflow is dropped and counted, not waited for
    assert delivered + dropped == 3
    assert len(receiver.received) == delivered
    assert sent(ops, "dead", "draft_posted", "failed") == 3
    assert "hook-token-93ab" not in caplog.text  # a Slack-style URL holds a token
    assert "not delivered after 3 attempt(s)" in caplog.text


def test_receiver_errors_are_retried_with_backoff(make_engine: MakeEngine, receiver: Receiver):
    receiver.add_fault(Fault(endpoint="hook", status=503, times=2, retry_after=0.05))
    engine = make_engine(ops=NO_OPS, notifications=[target(receiver)])
    ops = start_ops(engine)
    engine.emit("turn_failed", **TURN, reason="Uppzy could not answer", fallback=False)
    ops.stop(flush=5)
    assert receiver.call_count("hook") == 3
    assert [b["event"] for b in receiver.bodies()] == ["turn_failed"]
    assert sent(ops, "notifications[0]", "turn_failed") == 1


def test_sustained_uppzy_errors_send_one_message_per_incident(
    make_engine: MakeEngine, receiver: Receiver
):
    clock = [1000.0]
    settings = NotificationSettings.model_validate(target(
        receiver, error_threshold=3, error_window="60s", cooldown="10m"))
    engine = make_engine(ops=NO_OPS)
    notifier = Notifier([settings], engine, clock=lambda: clock[0]).start()

    def call(outcome: str, client: str = "uppzy") -> None:
        notifier.on_event("http_call", {"client": client, "endpoint": "chat_async",
                                        "outcome": outcome, "seconds": 0.01})

    call("503")
    call("500")
    call("503", client="zd")  # a helpdesk's errors are not Uppzy's
    call("200")
    call("timeout")
    call("429")  # the third Uppzy error within a minute: one alert
    for _ in range(5):
        call("503")  # the same incident: quiet
    clock[0] += 700  # cool-down over, and the earlier errors left the window
    call("503")
    call("503")
    call("429")  # a new incident, counted only from errors inside the window
    notifier.stop(flush=5)

    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == ["uppzy_errors", "uppzy_errors"]
    assert bodies[0]["data"] == {"rate_limited": 1, "server_errors": 2, "window_seconds": 60.0}
    assert bodies[1]["data"] == bodies[0]["data"]


def test_auth_refusals_alert_once_per_system(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, receiver: Receiver, tmp_path: Path
):
    engine = make_engine(ops=NO_OPS, notifications=[target(receiver)], adapter={
        "auth": {"email": "bot@example.com", "api_token": "wrong-token-5d2e"}})
    ops = start_ops(engine)
    engine.poll("zd")
    engine.emit("adapter_paused", adapter="zd", reason="authentication failed", status=401)
    ops.stop(flush=5)
    [paused] = receiver.bodies()
    assert paused["event"] == "auth_refused" and paused["severity"] == "critical"
    assert paused["data"] == {"system": "zd", "adapter": "zd", "reason": "authentication failed",
                              "status": 401}
    assert "wrong-token-5d2e" not in json.dumps(paused)

    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "Hello?")
    refused = make_engine(ops=NO_OPS, notifications=[target(receiver)],
                          uppzy={"api_key": "not-the-key-77f0"},
                          database={"url": f"sqlite:///{tmp_path / 'refused.db'}"})
    ops = start_ops(refused)
    assert not refused.run_once()
    assert refused.fatal is not None
    ops.stop(flush=5)  # what the daemon does before it exits 3
    last = receiver.bodies()[-1]
    assert last["event"] == "auth_refused" and last["data"]["system"] == "uppzy"
    assert "Uppzy refused access" in last["text"]
    assert "not-the-key-77f0" not in json.dumps(last)


def test_a_cursor_that_stops_moving_alerts_once_per_position(
    make_engine: MakeEngine, receiver: Receiver
):
    engine = make_engine(ops=NO_OPS, notifications=[
        target(receiver, events=["adapter_stale"], stale_intervals=4)])  # 4 x 0.5s polls
    ops = start_ops(engine)
    engine.poll("zd")
    t0 = utcnow()
    ops.check_stale(t0)
    ops.check_stale(t0 + timedelta(seconds=3))
    ops.check_stale(t0 + timedelta(seconds=4))  # the same position: already reported
    with Session(engine.db) as db:
        state = db.get(AdapterState, "zd")
        assert state is not None
        state.cursor_moved_at = t0 + timedelta(seconds=10)
        db.add(state)
        db.commit()
    ops.check_stale(t0 + timedelta(seconds=11))
    ops.check_stale(t0 + timedelta(seconds=13))
    ops.stop(flush=5)
    bodies = receiver.bodies()
    assert [b["event"] for b in bodies] == ["adapter_stale", "adapter_stale"]
    assert bodies[0]["data"]["adapter"] == "zd"
    assert 3 <= bodies[0]["data"]["cursor_age_seconds"] < 4
    assert bodies[0]["data"]["last_poll_ok_at"] is not None
    assert bodies[1]["data"]["cursor_age_seconds"] == 3.0


def test_notification_config_errors_name_the_key(make_engine: MakeEngine):
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.secret: .*required for format"):
        make_engine(notifications=[{"url": "https://hooks.example.com/x"}])
    with pytest.raises(ConfigError, match=r"notifications\[0\]\.events\[0\]: input should be"):
        make_engine(notifications=[{"url": "https://hooks.example.com/x", "format": "slack",
                                    "events": ["draft_sent"]}])
    with pytest.raises(ConfigError, match=r"notifications\[1\]\.url: "):
        make_engine(notifications=[{"url": "https://a.example.com/x", "format": "slack"},
                                   {"url": "hooks.example.com", "format": "slack"}])
