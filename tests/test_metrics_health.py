"""Metrics, health endpoints and log context, over real HTTP against the simulators."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import OpsSettings
from connector.core.errors import ConfigError
from connector.core.logs import JsonFormatter, TextFormatter, tag_instance
from connector.daemon.ops import Ops, start_ops
from connector.daemon.ops_server import MAX_BODY, OpsResponse
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]
OPS = {"listen": "127.0.0.1:0"}


@contextmanager
def ops_for(engine: Runtime) -> Iterator[Ops]:
    ops = start_ops(engine)
    try:
        yield ops
    finally:
        ops.stop()


def get(ops: Ops, path: str) -> requests.Response:
    assert ops.server is not None
    return requests.get(ops.server.url + path, timeout=5)


def scrape(ops: Ops) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = get(ops, "/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``labels``; None if there is none."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return sum(found) if found else None


def test_metrics_after_a_pass_count_calls_answers_and_posts(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "Where is my order?")
    zendesk.create_ticket(customer, "Can I change my address?")
    uppzy.add_fault(Fault(endpoint="chat_async", status=429, retry_after=0, times=1))
    engine = make_engine(ops=OPS)
    with ops_for(engine) as ops:
        assert engine.run_once()
        m = scrape(ops)

    assert value(m, "connector_uppzy_requests_total", endpoint="chat_async",
                 status_class="2xx") == 2
    assert value(m, "connector_uppzy_requests_total", endpoint="chat_async",
                 status_class="4xx") == 1
    assert value(m, "connector_uppzy_rate_limited_total", endpoint="chat_async") == 1
    assert value(m, "connector_uppzy_request_seconds_count", endpoint="chat_async") == 3
    assert value(m, "connector_uppzy_requests_total", endpoint="chat_status") >= 2
    assert value(m, "connector_answer_seconds_count", adapter="zd") == 2
    assert value(m, "connector_answer_status_polls_count", adapter="zd") == 2
    assert value(m, "connector_answer_status_polls_sum", adapter="zd") >= 2

    assert value(m, "connector_adapter_polls_total", adapter="zd", result="ok") == 1
    assert value(m, "connector_adapter_tickets_seen_total", adapter="zd") == 2
    assert value(m, "connector_adapter_requests_total", adapter="zd",
                 endpoint="incremental_tickets", status_class="2xx") == 1
    assert value(m, "connector_drafts_posted_total", adapter="zd", outcome="draft") == 2
    assert value(m, "connector_post_latency_seconds_count", adapter="zd") == 2
    assert value(m, "connector_turns", adapter="zd", state="posted") == 2
    assert value(m, "connector_turns", adapter="zd", state="queued") == 0
    assert value(m, "connector_adapter_paused", adapter="zd") == 0
    assert value(m, "connector_adapter_cursor_age_seconds", adapter="zd") >= 0
    assert value(m, "connector_adapter_poll_lag_seconds", adapter="zd") >= 0
    assert value(m, "connector_database_up") == 1


def test_each_engine_has_its_own_registry(make_engine: MakeEngine, tmp_path: Path):
    first = make_engine(ops=OPS)
    second = make_engine(ops=OPS, database={"url": f"sqlite:///{tmp_path / 'second.db'}"})
    with ops_for(first) as a, ops_for(second) as b:
        first.poll("zd")
        assert value(scrape(a), "connector_adapter_polls_total", result="ok") == 1
        assert value(scrape(b), "connector_adapter_polls_total", result="ok") is None


@contextmanager
def helpdesk_down(sim: ZendeskSimulator) -> Iterator[None]:
    """Stop the simulator as a crashed server would be: its port refuses connections, and the
    connections the client keeps alive from before are dropped instead of still served (a
    stopped ``ThreadingHTTPServer`` keeps serving those)."""
    sim.add_fault(Fault(kind="drop", times=None))
    sim.stop()
    try:
        yield
    finally:
        sim.clear_faults()
        sim.start()  # the same port: the adapter's URL still points here


def poll_until(engine: Runtime, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.poll("zd")
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_readyz_turns_unready_while_the_helpdesk_is_down_and_ready_after(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    engine = make_engine(ops=OPS, adapter={"poll_interval": "0.2s"})
    with ops_for(engine) as ops:
        never_polled = get(ops, "/readyz")
        assert never_polled.status_code == 503
        assert never_polled.json()["adapters"]["zd"]["last_poll_ok_seconds_ago"] is None

        engine.poll("zd")
        ready = get(ops, "/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["ready"] is True and body["database"] == "ok"
        assert body["adapters"]["zd"]["ready"] is True
        assert body["adapters"]["zd"]["limit_seconds"] == 0.6  # three poll intervals

        with helpdesk_down(zendesk):
            poll_until(engine, lambda: get(ops, "/readyz").status_code == 503)
            body = get(ops, "/readyz").json()
            assert body["ready"] is False and body["database"] == "ok"  # only the helpdesk
            assert body["adapters"]["zd"]["ready"] is False
            assert get(ops, "/healthz").status_code == 200  # alive, only not ready
            assert value(scrape(ops), "connector_adapter_polls_total", adapter="zd",
                         result="TransportError") >= 1

        poll_until(engine, lambda: get(ops, "/readyz").status_code == 200)
        assert get(ops, "/readyz").json()["adapters"]["zd"]["ready"] is True


def test_ops_server_routes_can_be_added_while_it_runs(make_engine: MakeEngine):
    engine = make_engine(ops=OPS)
    with ops_for(engine) as ops:
        assert ops.server is not None
        assert get(ops, "/nope").status_code == 404
        assert requests.post(ops.server.url + "/metrics", timeout=5).status_code == 405
        assert get(ops, "/healthz").text == "ok\n"

        ops.server.route("POST", "/webhooks/<adapter>", lambda request, adapter: OpsResponse(
            202, {"adapter": adapter, "body": request.body.decode()}))
        hook = ops.server.url + "/webhooks/zd"
        answer = requests.post(hook, data=b'{"ticket": 1}', timeout=5)
        assert answer.status_code == 202
        assert answer.json() == {"adapter": "zd", "body": '{"ticket": 1}'}
        # Refused on the announced length, before a byte of the body is read.
        conn = http.client.HTTPConnection(ops.server.host, ops.server.port, timeout=5)
        conn.putrequest("POST", "/webhooks/zd")
        conn.putheader("Content-Length", str(MAX_BODY + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()


def test_ops_listen_is_validated_and_a_taken_port_names_the_key(
    make_engine: MakeEngine, tmp_path: Path
):
    with pytest.raises(ConfigError, match=r"^ops\.listen: "):
        make_engine(ops={"listen": "9464"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = make_engine(ops={"listen": f"127.0.0.1:{port}"})
        taken_address = rf"127\.0\.0\.1:{port}"
        with pytest.raises(ConfigError, match=rf"^ops\.listen: cannot listen on {taken_address}"):
            start_ops(engine)
    second = make_engine(ops=OPS, database={"url": f"sqlite:///{tmp_path / 'second.db'}"})
    assert start_ops(second, serve=False).server is None  # run --once: no port to collide on
    disabled = second.config.model_copy(update={"ops": OpsSettings(enabled=False)})
    assert start_ops(second, disabled).server is None


# ----- log context ------------------------------------------------------------------------------
def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("connector.engine.turns", logging.INFO, __file__, 1,
                            "turn %d posted", (7,), None)
    rec.__dict__.update(extra)
    return rec


TURN = {"adapter": "zd", "ticket_id": "42", "session_id": "zd-42", "request_id": "req_1",
        "turn_id": 7}


def test_json_log_lines_carry_the_turn_identifiers():
    line = json.loads(JsonFormatter().format(record(**TURN)))
    assert line["msg"] == "turn 7 posted"
    assert {k: line[k] for k in TURN} == TURN
    plain = json.loads(JsonFormatter().format(record(request_id=None)))
    assert not set(TURN) & set(plain)  # absent or None: not printed as null


def test_text_log_lines_append_the_identifiers_as_key_value():
    line = TextFormatter().format(record(**TURN))
    assert line.endswith(
        "connector.engine.turns: turn 7 posted adapter=zd ticket_id=42 session_id=zd-42 "
        "request_id=req_1 turn_id=7")
    spaced = TextFormatter().format(record(adapter="zd", ticket_id="a b"))
    assert spaced.endswith('turn 7 posted adapter=zd ticket_id="a b"')
    assert TextFormatter().format(record()).endswith("turn 7 posted")


def test_text_log_context_comes_before_the_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record(adapter="zd")
        rec.exc_info = sys.exc_info()
    first, *rest = TextFormatter().format(rec).splitlines()
    assert first.endswith("turn 7 posted adapter=zd")
    assert rest[-1] == "ValueError: boom"


def test_instance_id_is_in_metrics_and_on_every_log_line(make_engine: MakeEngine):
    engine = make_engine(ops=OPS, engine={"instance_id": "host-a-1"})
    with ops_for(engine) as ops:
        assert value(scrape(ops), "connector_instance_info", instance="host-a-1") == 1.0
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        tag_instance("host-a-1")
        logging.getLogger("connector.test").warning("hello")
    finally:
        root.handlers[:] = saved
    assert json.loads(handler.stream.getvalue())["instance"] == "host-a-1"
