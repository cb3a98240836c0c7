"""UppzyClient against UppzySimulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

import connector.uppzy as uppzy_module
from adapters.simulation import Fault
from connector.core.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
)
from connector.core.http import HttpClient, RetryPolicy, Timeouts
from connector.testing.processes import free_port
from connector.testing.uppzy_sim import UppzySimulator
from connector.uppzy import AsyncStatus, ChatAnswer, UppzyClient

KEY = "sk-uppzy-test-7f3a9c51d2e8b4"
NO_PLAN_KEY = "sk-uppzy-noplan-0a1b2c3d"
SITE = "site-1"
FAST = RetryPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05, max_inline_wait=2.0)


@pytest.fixture
def make_sim() -> Iterator[Callable[..., UppzySimulator]]:
    started: list[UppzySimulator] = []

    def factory(**options: object) -> UppzySimulator:
        options.setdefault("api_keys", {KEY: "ok", NO_PLAN_KEY: "no_plan"})
        options.setdefault("site_ids", {SITE, "site-2"})
        options.setdefault("answer_time", 0.0)
        sim = UppzySimulator(**options)  # type: ignore[arg-type]
        sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[UppzySimulator]:
    # Stopping a simulator costs its poll interval (0.2 s): share the default one.
    sim = UppzySimulator(api_keys={KEY: "ok", NO_PLAN_KEY: "no_plan"},
                         site_ids={SITE, "site-2"}, answer_time=0.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(shared_sim: UppzySimulator) -> UppzySimulator:
    shared_sim.reset()
    return shared_sim


@pytest.fixture
def make_client() -> Iterator[Callable[..., UppzyClient]]:
    clients: list[UppzyClient] = []

    def factory(base_url: str, api_key: str = KEY, **options: object) -> UppzyClient:
        options.setdefault("timeouts", Timeouts(connect=1.0, read=2.0))
        options.setdefault("retry", FAST)
        options.setdefault("sync_read_timeout", 2.0)
        client = UppzyClient(base_url, api_key, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def client(sim: UppzySimulator, make_client: Callable[..., UppzyClient]) -> UppzyClient:
    return make_client(sim.base_url)



def _completed(client: UppzyClient, session: str = "s-1", message: str = "Refund policy?") -> str:
    request_id = client.submit(SITE, session, message)
    assert client.status(SITE, request_id).done
    return request_id


# ----- happy paths ---------------------------------------------------------------------------
def test_sync_chat_returns_answer_and_sends_optional_fields(
    client: UppzyClient, sim: UppzySimulator,
) -> None:
    answer = client.chat(SITE, "thread-1", "Can I return shoes?", email="a@example.com",
                         response_language="en")
    assert isinstance(answer, ChatAnswer)
    assert re.fullmatch(r"req_[0-9a-f]{32}", answer.request_id)
    assert answer.session_id == "thread-1"
    assert "Can I return shoes?" in answer.answer
    assert (answer.confidence_level, answer.confidence_score) == ("high", 0.87)
    info = sim.request_info(answer.request_id)
    assert info is not None
    assert (info["email"], info["response_language"], info["mode"]) == ("a@example.com", "en",
                                                                         "sync")
    assert sim.questions("thread-1") == ["Can I return shoes?"]


def test_optional_fields_are_left_out_when_not_given(
    client: UppzyClient, sim: UppzySimulator,
) -> None:
    request_id = client.submit(SITE, "s-1", "Hi")
    info = sim.request_info(request_id)
    assert info is not None
    assert info["email"] is None and info["response_language"] is None


def test_async_submit_then_poll_until_completed(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(answer_time=0.3, confidence=("low", 0.2))
    client = make_client(sim.base_url)
    request_id = client.submit(SITE, "s-async", "Where is my order?")
    seen: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        status = client.status(SITE, request_id)
        seen.append(status.status)
        if status.done:
            break
        assert not status.failed and status.answer is None
        time.sleep(0.03)
    assert seen[0] == "pending" and "processing" in seen and seen[-1] == "completed"
    assert status.answer == ChatAnswer(request_id, "s-async",
                                       "Simulated answer to: Where is my order?", "low", 0.2)
    info = sim.request_info(request_id)
    assert info is not None
    assert info["completed_at"] - info["created_at"] == pytest.approx(0.3, abs=1e-6)
    assert info["delivered_at"] >= info["completed_at"]


def test_zero_answer_time_completes_on_first_poll(client: UppzyClient) -> None:
    request_id = client.submit(SITE, "s-1", "Hello")
    status = client.status(SITE, request_id)
    assert status.done and not status.failed
    assert status.answer is not None and status.answer.request_id == request_id


@pytest.mark.parametrize("raw", ["queued", "processing", "expired", "in_progress"])
def test_unknown_async_status_means_still_working(
    client: UppzyClient, sim: UppzySimulator, raw: str,
) -> None:
    request_id = client.submit(SITE, "s-1", "Hello")
    sim.add_fault(Fault(endpoint="chat_status", status=200,
                        body={"request_id": request_id, "status": raw, "eta": 3}))
    status = client.status(SITE, request_id)
    assert status == AsyncStatus(request_id, raw, done=False, failed=False)


def test_renamed_progress_states_are_not_final(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(answer_time=5.0, progress_states=("queued", "thinking"))
    client = make_client(sim.base_url)
    status = client.status(SITE, client.submit(SITE, "s-1", "Hello"))
    assert (status.status, status.done, status.failed) == ("queued", False, False)


def test_failed_async_request_carries_server_error(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(fail_ratio=1.0, fail_error="upstream model timeout")
    client = make_client(sim.base_url)
    status = client.status(SITE, client.submit(SITE, "s-1", "Hello"))
    assert status.failed and not status.done
    assert status.error == "upstream model timeout" and status.answer is None


def test_failed_without_error_text_gets_a_default(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat_status", status=200, body={"status": "failed"}))
    status = client.status(SITE, "req_x")
    assert status.failed and status.error == "Async chat failed"


def test_feedback_is_idempotent_and_keeps_first_value(
    client: UppzyClient, sim: UppzySimulator,
) -> None:
    request_id = _completed(client)
    assert client.feedback(SITE, "s-1", request_id, "good") is True
    assert client.feedback(SITE, "s-1", request_id, "bad") is False
    assert sim.feedback_recorded() == {request_id: "good"}
    info = sim.request_info(request_id)
    assert info is not None and info["feedback_calls"] == 2


def test_feedback_on_unfinished_request_is_a_conflict(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(answer_time=5.0)
    client = make_client(sim.base_url)
    request_id = client.submit(SITE, "s-1", "Hello")
    with pytest.raises(Conflict):
        client.feedback(SITE, "s-1", request_id, "good")
    assert sim.call_count("feedback") == 1


def test_feedback_not_completed_status_is_configurable(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(answer_time=5.0, feedback_not_completed_status=400)
    client = make_client(sim.base_url)
    with pytest.raises(BadRequest):
        client.feedback(SITE, "s-1", client.submit(SITE, "s-1", "Hello"), "good")


def test_close_session_is_idempotent(client: UppzyClient, sim: UppzySimulator) -> None:
    client.chat(SITE, "s-close", "Hello")
    client.close_session(SITE, "s-close")
    client.close_session(SITE, "s-close")
    client.close_session(SITE, "never-used")
    assert sim.closed_sessions() == {"s-close": 2, "never-used": 1}
    assert sim.close_calls("s-close") == 2


def test_chat_on_closed_session_rejected_or_restarted(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    reject = make_sim()
    client = make_client(reject.base_url)
    client.chat(SITE, "s-1", "first")
    client.close_session(SITE, "s-1")
    with pytest.raises(Conflict, match="session is closed"):
        client.submit(SITE, "s-1", "second")
    assert reject.call_count("chat_async") == 1

    fresh = make_sim(closed_session_policy="new")
    client = make_client(fresh.base_url)
    client.chat(SITE, "s-1", "first")
    client.close_session(SITE, "s-1")
    client.chat(SITE, "s-1", "second")
    assert fresh.questions("s-1") == ["first", "second"]
    assert fresh.closed_sessions() == {}


def test_closing_unknown_session_can_be_404(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(unknown_session_close="404")
    client = make_client(sim.base_url)
    with pytest.raises(NotFound):
        client.close_session(SITE, "ghost")


def test_list_sessions_from_simulator(client: UppzyClient) -> None:
    client.chat(SITE, "s-a", "one", email="a@example.com")
    client.chat(SITE, "s-b", "two")
    client.chat(SITE, "s-b", "three")
    client.close_session(SITE, "s-a")
    sessions = {s["session_id"]: s for s in client.list_sessions(SITE)}
    assert sessions["s-a"]["status"] == "closed" and sessions["s-a"]["email"] == "a@example.com"
    assert sessions["s-b"]["question_count"] == 2
    assert [s["session_id"] for s in client.list_sessions(SITE, status="open")] == ["s-b"]
    assert client.list_sessions("site-2") == []


def test_list_sessions_follows_page_numbers(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(sessions_page_size=2)
    client = make_client(sim.base_url)
    for i in range(5):
        client.submit(SITE, f"s-{i}", "hi")
    assert [s["session_id"] for s in client.list_sessions(SITE)] == [f"s-{i}" for i in range(5)]
    assert sim.call_count("sessions") == 3


def test_list_sessions_is_bounded(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uppzy_module, "MAX_SESSION_PAGES", 3)
    sim = make_sim(sessions_page_size=1)
    client = make_client(sim.base_url)
    for i in range(5):
        client.submit(SITE, f"s-{i}", "hi")
    assert len(client.list_sessions(SITE)) == 3
    assert sim.call_count("sessions") == 3


@pytest.mark.parametrize(
    "pages",
    [
        [[{"session_id": "a"}, {"session_id": "b"}]],
        [{"data": [{"session_id": "a"}, {"session_id": "b"}], "total": 2}],
        [{"result": {"items": [{"session_id": "a"}, "junk", {"session_id": "b"}]}}],
        [{"conversations": [{"session_id": "a"}, {"session_id": "b"}], "count": 2}],
        [{"items": [{"session_id": "a"}], "next_cursor": "c2"},
         {"items": [{"session_id": "b"}], "next_cursor": None}],
        [{"sessions": [{"session_id": "a"}], "links": {"next": "?page=2"}},
         {"sessions": [{"session_id": "b"}], "links": {"next": None}}],
        [{"sessions": [{"session_id": "a"}], "meta": {"page": 1, "has_more": True}},
         {"sessions": [{"session_id": "b"}], "meta": {"page": 2, "has_more": False}}],
    ],
    ids=["bare-list", "data", "nested", "only-list", "cursor", "next-link", "has-more"],
)
def test_list_sessions_tolerates_shapes(
    client: UppzyClient, sim: UppzySimulator, pages: list[object],
) -> None:
    for body in pages:
        sim.add_fault(Fault(endpoint="sessions", status=200, body=body))
    assert [s["session_id"] for s in client.list_sessions(SITE)] == ["a", "b"]
    assert sim.call_count("sessions") == len(pages)


def test_list_sessions_empty_and_repeating_pages(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="sessions", status=200, body=None))
    assert client.list_sessions(SITE) == []
    sim.add_fault(Fault(endpoint="sessions", status=200, times=None,
                        body={"sessions": [{"session_id": "a"}], "next_cursor": "same"}))
    assert len(client.list_sessions(SITE)) == 2  # the second "next" repeats: stop, don't loop
    assert sim.call_count("sessions") == 3


def test_list_sessions_does_not_follow_links_to_other_hosts(
    client: UppzyClient, sim: UppzySimulator,
) -> None:
    sim.add_fault(Fault(endpoint="sessions", status=200, body={
        "sessions": [{"session_id": "a"}], "next": "https://evil.example/steal?page=2"}))
    assert [s["session_id"] for s in client.list_sessions(SITE)] == ["a"]
    assert sim.call_count("sessions") == 1


def test_tenant_limits(client: UppzyClient, sim: UppzySimulator) -> None:
    limits = client.tenant_limits("tenant-1")
    assert limits["tenant_id"] == "tenant-1" and "limits" in limits
    with pytest.raises(NotFound, match="tenant not found"):
        client.tenant_limits("tenant-x")
    sim.add_fault(Fault(endpoint="tenant_limits", status=200, body=None))
    assert client.tenant_limits("tenant-1") == {}


def test_endpoint_labels_reach_the_observer(sim: UppzySimulator,
                                            make_client: Callable[..., UppzyClient]) -> None:
    seen: list[tuple[str, str, str]] = []
    client = make_client(sim.base_url, observer=lambda n, label, outcome, s: seen.append(
        (n, label, outcome)))
    client.chat(SITE, "s-1", "q")
    request_id = client.submit(SITE, "s-1", "q2")
    client.status(SITE, request_id)
    client.feedback(SITE, "s-1", request_id, "good")
    client.close_session(SITE, "s-1")
    client.list_sessions(SITE)
    client.tenant_limits("tenant-1")
    assert seen == [("uppzy", label, "200") for label in (
        "chat", "chat_async", "chat_status", "feedback", "session_close", "sessions",
        "tenant_limits")]


# ----- errors --------------------------------------------------------------------------------
def test_unknown_key_is_authentication_failed_with_server_text(
    sim: UppzySimulator, make_client: Callable[..., UppzyClient],
) -> None:
    client = make_client(sim.base_url, api_key="sk-wrong-key-000000")
    with pytest.raises(AuthenticationFailed) as caught:
        client.submit(SITE, "s-1", "Hello")
    assert caught.value.status == 401 and caught.value.detail == "invalid_api_key"
    assert "invalid_api_key" in str(caught.value)
    with pytest.raises(AuthenticationFailed):
        client.status(SITE, "req_x")
    assert sim.call_count() == 2  # neither was retried


def test_key_without_plan_is_permission_denied(
    sim: UppzySimulator, make_client: Callable[..., UppzyClient],
) -> None:
    client = make_client(sim.base_url, api_key=NO_PLAN_KEY)
    with pytest.raises(PermissionDenied, match="api_access_not_available_on_plan"):
        client.tenant_limits("tenant-1")
    assert sim.call_count() == 1


def test_not_found_errors(client: UppzyClient, sim: UppzySimulator) -> None:
    with pytest.raises(NotFound, match="site not found"):
        client.chat("site-x", "s-1", "Hello")
    with pytest.raises(NotFound, match="request not found"):
        client.status(SITE, "req_00000000000000000000000000000000")
    foreign = client.submit("site-2", "s-1", "Hello")
    with pytest.raises(NotFound, match="request not found"):
        client.status(SITE, foreign)
    with pytest.raises(NotFound, match="request not found"):
        client.feedback(SITE, "s-1", foreign, "good")
    assert sim.call_count("chat_status") == 2  # a 404 is not retried


def test_bad_requests(client: UppzyClient, sim: UppzySimulator) -> None:
    with pytest.raises(BadRequest, match="session_id is required"):
        client.close_session(SITE, "")
    with pytest.raises(BadRequest, match="message is required"):
        client.chat(SITE, "s-1", "   ")
    request_id = _completed(client)
    with pytest.raises(BadRequest, match="feedback must be 'good' or 'bad'"):
        client.feedback(SITE, "s-1", request_id, "meh")
    assert sim.call_count("session_close") == 1 and sim.call_count("feedback") == 1


def test_simulator_requires_json_content_type(sim: UppzySimulator) -> None:
    resp = requests.post(f"{sim.base_url}/m2m/sites/{SITE}/chat/session/close",
                         data='{"session_id": "s"}', headers={"X-API-Key": KEY}, timeout=2)
    assert resp.status_code == 400 and resp.json() == {"error": "invalid payload"}


def test_429_retry_waits_for_retry_after(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat_async", status=429, retry_after=0.3,
                        body={"error": "rate limited"}))
    assert client.submit(SITE, "s-1", "Hello").startswith("req_")
    calls = [c for c in sim.calls if c.endpoint == "chat_async"]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.3
    assert sim.questions("s-1") == ["Hello"]


def test_429_on_sync_chat_is_retried(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat", status=429, retry_after=0.3))
    client.chat(SITE, "s-1", "Hello")
    calls = [c for c in sim.calls if c.endpoint == "chat"]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.3


def test_long_retry_after_raises_without_sleeping(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat_status", status=429, retry_after=10))
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        client.status(SITE, "req_x")
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == pytest.approx(10)
    assert sim.call_count("chat_status") == 1


def test_5xx_on_idempotent_calls_is_retried(client: UppzyClient, sim: UppzySimulator) -> None:
    request_id = _completed(client)
    sim.add_fault(Fault(endpoint="chat_status", status=503, times=2))
    assert client.status(SITE, request_id).done
    assert [c.status for c in sim.calls if c.endpoint == "chat_status"][-3:] == [503, 503, 200]


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("endpoint", ["feedback", "session_close"])
def test_fenced_side_effects_are_sent_once_and_never_wait_inline(
    client: UppzyClient, sim: UppzySimulator, endpoint: str, status: int,
) -> None:
    """A close or a feedback is confirmed as ours right before it is sent; any inline wait
    would let the claim expire and another instance send it too, so the error goes straight
    back to the caller, whose own backoff claims and confirms again."""
    request_id = _completed(client)
    sim.add_fault(Fault(endpoint=endpoint, status=status, times=1, retry_after=0.05))
    started = time.monotonic()
    with pytest.raises((ServerError, RateLimited)):
        if endpoint == "feedback":
            client.feedback(SITE, "s-1", request_id, "good")
        else:
            client.close_session(SITE, "s-1")
    assert time.monotonic() - started < 1.0
    assert [c.status for c in sim.calls if c.endpoint == endpoint] == [status]
    time.sleep(0.1)  # the 429's Retry-After (0.05 s) holds every call back until then
    if endpoint == "feedback":  # the next claim sends it again, and then it goes through
        assert client.feedback(SITE, "s-1", request_id, "good") is True
    else:
        client.close_session(SITE, "s-1")
    assert [c.status for c in sim.calls if c.endpoint == endpoint] == [status, 200]


def test_5xx_retries_are_bounded(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat_status", status=500, times=None))
    with pytest.raises(ServerError):
        client.status(SITE, "req_x")
    assert sim.call_count("chat_status") == FAST.attempts


@pytest.mark.parametrize("method", ["chat", "submit"])
def test_5xx_on_chat_and_submit_is_not_retried(
    client: UppzyClient, sim: UppzySimulator, method: str,
) -> None:
    sim.add_fault(Fault(endpoint="chat", status=502, times=None, body={"error": "bad gateway"}))
    with pytest.raises(ServerError, match="bad gateway"):
        getattr(client, method)(SITE, "s-1", "Hello")
    assert len(sim.calls) == 1
    assert sim.questions("s-1") == []


def test_sync_chat_uses_its_own_read_timeout(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(sync_latency=0.4)
    patient = make_client(sim.base_url, timeouts=Timeouts(connect=1.0, read=0.1),
                          sync_read_timeout=2.0)
    assert patient.chat(SITE, "s-1", "slow one").answer
    hasty = make_client(sim.base_url, sync_read_timeout=0.1)
    with pytest.raises(TransportError) as caught:
        hasty.chat(SITE, "s-2", "slow two")
    assert caught.value.sent is True
    assert sim.call_count("chat") == 1  # the timed-out call is recorded once the sim answers
    time.sleep(0.45)
    assert sim.questions("s-2") == ["slow two"]  # it did reach the server: no repeat allowed
    assert sim.call_count("chat") == 2


def test_read_timeout_on_status_is_retried(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim()  # its delayed handler finishes after the test: keep it off the shared sim
    client = make_client(sim.base_url, timeouts=Timeouts(connect=1.0, read=0.2))
    request_id = _completed(client)
    sim.add_fault(Fault(endpoint="chat_status", kind="delay", delay=0.5))
    assert client.status(SITE, request_id).done


def test_dropped_connection_on_submit_is_not_retried(
    client: UppzyClient, sim: UppzySimulator,
) -> None:
    sim.add_fault(Fault(endpoint="chat_async", kind="drop"))
    with pytest.raises(TransportError) as caught:
        client.submit(SITE, "s-1", "Hello")
    assert caught.value.sent is True
    assert [c.status for c in sim.calls] == [0]


def test_dropped_connection_on_status_is_retried(client: UppzyClient, sim: UppzySimulator) -> None:
    request_id = _completed(client)
    sim.add_fault(Fault(endpoint="chat_status", kind="drop"))
    assert client.status(SITE, request_id).done
    assert [c.status for c in sim.calls if c.endpoint == "chat_status"] == [200, 0, 200]


def test_refused_connection_on_submit_is_retried(make_client: Callable[..., UppzyClient]) -> None:
    outcomes: list[str] = []
    client = make_client(f"http://127.0.0.1:{free_port()}/api/v1",
                         observer=lambda n, label, outcome, s: outcomes.append(outcome))
    with pytest.raises(TransportError) as caught:
        client.submit(SITE, "s-1", "Hello")
    assert caught.value.sent is False
    assert outcomes == ["transport"] * FAST.attempts


def test_submit_succeeds_once_the_server_comes_up(make_client: Callable[..., UppzyClient]) -> None:
    port = free_port()
    sim = UppzySimulator(port=port, api_keys={KEY: "ok"}, answer_time=0.0)
    starter = threading.Timer(0.2, sim.start)
    starter.start()
    try:
        client = make_client(f"http://127.0.0.1:{port}/api/v1", retry=RetryPolicy(
            attempts=8, backoff_base=0.1, backoff_cap=0.4, max_inline_wait=2.0))
        request_id = client.submit(SITE, "s-1", "Hello")
        assert sim.call_count("chat_async") == 1
        assert sim.request_info(request_id) is not None
    finally:
        starter.join()
        sim.stop()


# ----- odd bodies ----------------------------------------------------------------------------
def test_error_with_empty_body(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat", status=500, body=None))
    with pytest.raises(ServerError) as caught:
        client.chat(SITE, "s-1", "Hello")
    assert caught.value.status == 500 and caught.value.detail == ""


def test_errors_with_non_json_bodies(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat_async", status=502, body="<html>Bad Gateway</html>"))
    with pytest.raises(ServerError, match="Bad Gateway"):
        client.submit(SITE, "s-1", "Hello")
    sim.add_fault(Fault(endpoint="feedback", status=400, body="payload rejected"))
    with pytest.raises(BadRequest, match="payload rejected"):
        client.feedback(SITE, "s-1", "req_x", "good")


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [("chat_async", None), ("chat_async", {"status": "pending"}), ("chat_async", "ok"),
     ("chat_async", [1, 2]), ("chat_status", {"request_id": "req_x"}),
     ("chat_status", {"status": "completed"}), ("chat_status", {"status": "completed",
                                                               "answer": None}),
     ("chat", {"request_id": "req_x", "confidence_level": "high"}), ("tenant_limits", [1])],
)
def test_2xx_without_required_fields_is_malformed(
    client: UppzyClient, sim: UppzySimulator, endpoint: str, body: object,
) -> None:
    sim.add_fault(Fault(endpoint=endpoint, status=200, body=body))
    call = {
        "chat_async": lambda: client.submit(SITE, "s-1", "Hello"),
        "chat_status": lambda: client.status(SITE, "req_x"),
        "chat": lambda: client.chat(SITE, "s-1", "Hello"),
        "tenant_limits": lambda: client.tenant_limits("tenant-1"),
    }[endpoint]
    with pytest.raises(MalformedResponse):
        call()
    assert sim.call_count(endpoint) == 1


def test_empty_2xx_bodies_where_nothing_is_needed(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="session_close", status=200, body=None))
    client.close_session(SITE, "s-1")
    sim.add_fault(Fault(endpoint="session_close", status=200, body="OK"))
    client.close_session(SITE, "s-1")
    sim.add_fault(Fault(endpoint="feedback", status=200, body=None))
    assert client.feedback(SITE, "s-1", "req_x", "good") is False


def test_optional_fields_are_tolerated(client: UppzyClient, sim: UppzySimulator) -> None:
    sim.add_fault(Fault(endpoint="chat", status=200, body={
        "answer": "Yes.", "confidence_level": " LOW ", "confidence_score": "0.31",
        "sources": [{"url": "https://x"}], "usage": {"tokens": 12}}))
    answer = client.chat(SITE, "s-1", "Hello")
    assert answer == ChatAnswer("", "s-1", "Yes.", "low", 0.31)
    sim.add_fault(Fault(endpoint="chat_status", status=200, body={
        "status": "completed", "answer": "Done.", "confidence_score": True}))
    status = client.status(SITE, "req_y")
    assert status.answer == ChatAnswer("req_y", "", "Done.", None, None)


# ----- concurrency bookkeeping in the simulator (other suites rely on it) ----------------------
def test_simulator_tracks_requests_in_flight_per_session(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
) -> None:
    sim = make_sim(answer_time=0.3)
    client = make_client(sim.base_url)
    client.submit(SITE, "calm", "one")
    client.submit(SITE, "busy", "one")
    client.submit(SITE, "busy", "two")
    assert sim.in_flight("busy") == 2 and sim.in_flight("calm") == 1
    assert sim.max_concurrent_per_session == 2
    assert sim.overlapping_sessions() == ["busy"]
    time.sleep(0.35)
    assert sim.in_flight("busy") == 0
    client.submit(SITE, "calm", "two")  # after the first finished: no overlap
    assert sim.overlapping_sessions() == ["busy"]
    state = sim.state()
    assert state["max_concurrent_per_session"] == 2 and state["questions"] == 4


# ----- secrets -------------------------------------------------------------------------------
def test_api_key_never_logged_nor_in_errors(
    make_sim: Callable[..., UppzySimulator], make_client: Callable[..., UppzyClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = make_sim()
    client = make_client(sim.base_url)
    errors: list[Exception] = []
    request_id = client.submit(SITE, "s-1", "Hello")
    client.status(SITE, request_id)
    client.chat(SITE, "s-1", "Hello again")
    sim.add_fault(Fault(endpoint="feedback", status=400, body={"error": f"bad key {KEY}"}))
    sim.add_fault(Fault(endpoint="chat_status", status=503, times=None,
                        body=f"X-API-Key: {KEY} upstream down"))
    sim.add_fault(Fault(endpoint="session_close", status=429, retry_after=0.05))
    for call in (
        lambda: client.feedback(SITE, "s-1", request_id, "good"),
        lambda: client.status(SITE, request_id),
        lambda: client.close_session(SITE, "s-1"),
        lambda: make_client(sim.base_url, api_key="sk-wrong-key-000000").chat(SITE, "s", "x"),
        lambda: make_client(f"http://127.0.0.1:{free_port()}/api/v1").status(SITE, "r"),
    ):
        try:
            call()
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 5  # the close's 429 too: a fenced call is sent once
    assert "***" in str(errors[0]) and "***" in str(errors[1])
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc)
        assert KEY not in getattr(exc, "detail", "")
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()


def test_proxy_from_the_environment_is_used_and_no_proxy_honoured(
    make_sim: Callable[..., UppzySimulator], monkeypatch: pytest.MonkeyPatch
):
    """The client reads the proxy settings once per host instead of on every call; it must
    still send through HTTP_PROXY, and straight to hosts listed in NO_PROXY."""
    sim = make_sim()
    seen: list[str] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        proxy_url = f"http://127.0.0.1:{server.getsockname()[1]}"

        def proxy_once() -> None:
            conn, _ = server.accept()
            with conn:
                seen.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())
                body = b'{"ok": true}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))

        thread = threading.Thread(target=proxy_once, daemon=True)
        thread.start()
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1")
        via_proxy = HttpClient("http://helpdesk.invalid", name="proxied")
        direct = UppzyClient(sim.base_url, KEY)
        try:
            assert via_proxy.request("GET", "/api/ping", endpoint="ping").data == {"ok": True}
            answer = direct.chat(SITE, "proxy-check", "Does a direct call still work?")
            assert answer.answer
        finally:
            via_proxy.close()
            direct.close()
        thread.join(timeout=5)
    assert seen == ["GET http://helpdesk.invalid/api/ping HTTP/1.1"]
