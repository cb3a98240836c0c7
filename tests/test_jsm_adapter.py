"""The Jira Service Management adapter against its simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError
from support import API_KEY, SeenCalls

from adapters.auth import MemoryCredentials
from adapters.base import ChangePage, Role
from adapters.jsm import JsmAdapter, JsmSettings
from adapters.jsm.simulator import JsmSimulator
from adapters.registry import adapter_class
from adapters.simulation import Fault
from connector.config import parse_config
from connector.core.errors import (
    AuthenticationFailed,
    ConfigError,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)
MARKER = "AI draft, Uppzy ref req_jsm42"

MakeAdapter = Callable[..., JsmAdapter]


@pytest.fixture
def sim() -> Iterator[JsmSimulator]:
    simulator = JsmSimulator().start()
    yield simulator  # type: ignore[misc]
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[JsmAdapter] = []

    def make(simulator: JsmSimulator, store: MemoryCredentials | None = None,
             **overrides: Any) -> JsmAdapter:
        config = {"name": "jsm", "type": "jsm", **simulator.adapter_config(), **overrides}
        adapter = JsmAdapter(JsmSettings.model_validate(config))
        if store is not None:
            adapter.bind_credentials(store)
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


def oauth(sim: JsmSimulator, refresh_token: str | None = None) -> dict[str, Any]:
    client, secret = sim.oauth_client
    return {"client_id": client, "client_secret": secret, "token_url": sim.url,
            "refresh_token": refresh_token or sim.authorize()}


def walk(adapter: JsmAdapter, cursor: str | None) -> tuple[list[ChangePage], str]:
    """Poll until the feed has nothing more right now."""
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        assert len(pages) < 50, "the feed never ends"
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


def search_queries(sim: JsmSimulator) -> SeenCalls[dict[str, list[str]]]:
    return SeenCalls(sim, lambda call: call.endpoint.startswith("search"),
                     lambda call: {"_path": [call.path], **call.query})


# ----- settings --------------------------------------------------------------------------------
def test_adapter_is_found_through_its_entry_point() -> None:
    assert adapter_class("jsm") is JsmAdapter


def test_oauth_on_the_site_address_is_a_config_error_that_hides_the_secrets() -> None:
    config = {"name": "jsm", "type": "jsm", "url": "https://acme.atlassian.net",
              "auth": {"client_id": "c", "client_secret": "s3cret-value",
                       "refresh_token": "r3fresh-value"}}
    with pytest.raises(ValidationError):
        JsmSettings.model_validate(config)
    with pytest.raises(ConfigError) as caught:
        parse_config({"uppzy": {"base_url": "http://127.0.0.1:9", "api_key": "k",
                                "site_id": "s"},
                      "database": {"url": "sqlite:///unused.db"}, "adapters": [config]})
    assert "adapters[0]" in str(caught.value) and "api.atlassian.com/ex/jira" in str(caught.value)
    assert "s3cret-value" not in str(caught.value) and "r3fresh-value" not in str(caught.value)
    gateway = {**config, "url": "https://api.atlassian.com/ex/jira/1234-abcd"}
    assert JsmSettings.model_validate(gateway).url.endswith("/ex/jira/1234-abcd")


# ----- the change feed -------------------------------------------------------------------------
def test_search_is_jql_on_updated_in_whole_minutes_through_search_jql(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    ticket = sim.create_request(customer, "Hello")
    seen = search_queries(sim)
    pages, _ = walk(make_adapter(sim, projects=["SD"]), None)
    assert ids(pages) == [str(ticket)]
    sent = seen[0]
    assert sent["_path"] == ["/rest/api/3/search/jql"]
    query = sent["jql"][0]
    since = int(query.split("updated >= ")[1].split()[0])
    assert since % 60_000 == 0 and 'project in ("SD")' in query
    assert "status" in sent["fields"][0].split(",")  # Jira returns ids alone otherwise


def test_simulator_has_removed_the_old_search_and_returns_ids_only_by_default(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    sim.create_request(sim.add_account("Cy", "customer"), "Hello")
    auth = make_adapter(sim).auth_headers()
    old = requests.get(f"{sim.url}/rest/api/3/search", headers=auth, timeout=5,
                       params={"jql": "updated >= 0 ORDER BY updated ASC"})
    assert old.status_code == 410
    new = requests.get(f"{sim.url}/rest/api/3/search/jql", headers=auth, timeout=5,
                       params={"jql": "updated >= 0 ORDER BY updated ASC"})
    assert new.status_code == 200 and "fields" not in new.json()["issues"][0]


def test_simulator_compares_updated_to_the_minute(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    ticket = sim.create_request(sim.add_account("Cy", "customer"), "Hello")
    with sim.lock:
        minute = sim.site.issues[ticket].updated // 60_000 * 60_000
    auth = make_adapter(sim).auth_headers()

    def found(bound: int) -> int:
        answer = requests.get(f"{sim.url}/rest/api/3/search/jql", headers=auth, timeout=5,
                              params={"jql": f"updated >= {bound} ORDER BY updated ASC"})
        return len(answer.json()["issues"])

    assert (found(minute + 59_999), found(minute + 60_000)) == (1, 0)


def test_pages_follow_next_page_token_past_a_page_cap(make_adapter: MakeAdapter) -> None:
    with JsmSimulator(page_cap=3) as sim:
        customer = sim.add_account("Cy", "customer")
        tickets = [str(sim.create_request(customer, f"Q{i}")) for i in range(8)]
        seen = search_queries(sim)
        pages, cursor = walk(make_adapter(sim, page_size=50), None)
        assert sorted(ids(pages)) == sorted(tickets) and len(set(ids(pages))) == 8
        assert any("nextPageToken" in query for query in seen)
        assert ids(walk(make_adapter(sim), cursor)[0]) == []  # nothing twice


def test_an_expired_page_token_restarts_the_pass_without_losing_requests(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    tickets = [str(sim.create_request(customer, f"Q{i}")) for i in range(5)]
    adapter = make_adapter(sim, page_size=2)
    first = adapter.poll_changes(None, LONG_AGO)
    assert first.more
    sim.expire_page_tokens()
    rest, _ = walk(adapter, first.cursor)
    assert sorted(set(ids([first, *rest]))) == sorted(tickets)


def test_a_change_in_the_same_minute_is_reported_and_nothing_twice(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    ticket = str(sim.create_request(customer, "Hello"))
    adapter = make_adapter(sim)
    pages, cursor = walk(adapter, None)
    assert ids(pages) == [ticket]
    assert ids(walk(adapter, cursor)[0]) == []  # the overlap re-reads, the cursor dedupes
    sim.add_comment(int(ticket), customer, "More")
    pages, cursor = walk(adapter, cursor)
    assert ids(pages) == [ticket]
    assert ids(walk(adapter, cursor)[0]) == []


def test_changes_the_index_shows_late_are_still_reported(make_adapter: MakeAdapter) -> None:
    with JsmSimulator(index_lag=0.6) as sim:
        customer = sim.add_account("Cy", "customer")
        early = str(sim.create_request(customer, "Early"))
        time.sleep(0.7)
        late = str(sim.create_request(customer, "Late, not indexed yet"))
        adapter = make_adapter(sim)
        pages, cursor = walk(adapter, None)
        assert ids(pages) == [early]
        time.sleep(0.7)
        assert ids(walk(adapter, cursor)[0]) == [late]


def test_filters_keep_the_service_desk_and_request_types_asked_for(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    sim.create_request(customer, "An incident", request_type_id=1)
    wanted = str(sim.create_request(customer, "Access please", request_type_id=2))
    pages, cursor = walk(make_adapter(sim, request_type_ids=[2], service_desk_ids=[1]), None)
    assert ids(pages) == [wanted]
    assert ids(walk(make_adapter(sim, service_desk_ids=[7]), cursor)[0]) == []


def test_status_category_done_is_resolved_whatever_the_status_is_called(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    ticket = sim.create_request(customer, "Hello")
    adapter = make_adapter(sim)
    _, cursor = walk(adapter, None)
    for status, resolved in (("Canceled", True), ("Waiting for customer", False),
                             ("Resolved", True)):
        sim.set_status(ticket, status)
        pages, cursor = walk(adapter, cursor)
        assert [(t.status, t.resolved) for p in pages for t in p.tickets] == [(status, resolved)]
        assert adapter.get_ticket(str(ticket)).resolved is resolved


# ----- the conversation ------------------------------------------------------------------------
def test_roles_come_from_the_reporter_and_the_authors_account_types(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    colleague = sim.add_account("Colleague", "atlassian")  # an internal desk's requester
    agent = sim.add_account("Agent", "atlassian", agent=True)
    bot = sim.add_account("Automation for Jira", "app")
    other = sim.add_account("Another customer", "customer")
    ticket = sim.create_request(colleague, "My laptop is slow")
    sim.add_comment(ticket, agent, "Try a restart")
    sim.add_comment(ticket, agent, "Known issue", public=False)
    sim.add_comment(ticket, bot, "SLA reminder")
    sim.add_comment(ticket, other, "Me too")
    sim.add_comment(ticket, colleague, "Still slow")
    adapter = make_adapter(sim)
    adapter.post_draft(str(ticket), f"Our answer\n\n— {MARKER}")
    got = [(m.body.split("\n")[0], m.role, m.public)
           for m in adapter.list_messages(adapter.get_ticket(str(ticket)))]
    assert got == [
        ("My laptop is slow", Role.CUSTOMER, True), ("Try a restart", Role.AGENT, True),
        ("Known issue", Role.AGENT, False), ("SLA reminder", Role.SYSTEM, True),
        ("Me too", Role.CUSTOMER, True), ("Still slow", Role.CUSTOMER, True),
        ("Our answer", Role.AGENT, False),
    ]
    assert sim.call_count("user") == 3  # one read per author, kept


def test_an_author_whose_type_cannot_be_read_counts_as_an_agent_with_a_warning(
    sim: JsmSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    sim.browse_users = False
    reporter, other = sim.add_account("Cy", "customer"), sim.add_account("Di", "customer")
    ticket = sim.create_request(reporter, "Hello")
    sim.add_comment(ticket, other, "Private words of Di")
    sim.add_comment(ticket, reporter, "Private words of Cy")
    adapter = make_adapter(sim)
    with caplog.at_level(logging.WARNING):
        roles = [m.role for m in adapter.list_messages(adapter.get_ticket(str(ticket)))]
    assert roles == [Role.CUSTOMER, Role.AGENT, Role.CUSTOMER]
    assert other in caplog.text and "PermissionDenied" in caplog.text
    assert "Private words" not in caplog.text


def test_a_request_out_of_sight_is_not_found_although_its_comments_read_empty(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    ticket = sim.create_request(sim.add_account("Cy", "customer"), "Hello")
    adapter = make_adapter(sim)
    sim.hide(ticket)
    listing = requests.get(f"{sim.url}/rest/servicedeskapi/request/{ticket}/comment",
                           headers=adapter.auth_headers(), timeout=5)
    assert listing.status_code == 200 and listing.json()["values"] == []
    with pytest.raises(NotFound):
        adapter.list_messages(adapter.get_ticket(str(ticket)))


# ----- writing ---------------------------------------------------------------------------------
def test_post_draft_is_an_explicitly_internal_comment_by_our_account(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    ticket = sim.create_request(sim.add_account("Cy", "customer"), "Hello")
    posted = make_adapter(sim).post_draft(str(ticket), f"Line one\nLine two\n\n— {MARKER}")
    assert posted.kind == "note"
    [comment] = sim.comments(ticket)
    assert (str(comment["id"]), comment["author"], comment["public"]) == (
        posted.external_id, sim.bot, False)
    assert comment["body"].startswith("Line one\nLine two")


def test_simulator_makes_a_comment_public_unless_told_and_refuses_customers_notes(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    ticket = sim.create_request(customer, "Hello")
    auth = make_adapter(sim).auth_headers()
    url = f"{sim.url}/rest/servicedeskapi/request/{ticket}/comment"
    assert requests.post(url, json={"body": "x"}, headers=auth, timeout=5).json()["public"]
    with sim.lock:
        sim.site.accounts[customer].api_token = "customer-token"
    header = base64.b64encode(f"{sim.site.accounts[customer].email}:customer-token".encode())
    as_customer = {"Authorization": f"Basic {header.decode()}"}
    refused = requests.post(url, json={"body": "x", "public": False}, timeout=5,
                            headers=as_customer)
    assert refused.status_code == 403
    assert requests.post(url, json={"body": "y", "public": True}, timeout=5,
                         headers=as_customer).status_code == 201


def test_find_posted_recognises_the_marker_only_on_our_own_comments(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    agent = sim.add_account("Agent", "atlassian", agent=True)
    ticket = sim.create_request(customer, "Hello")
    sim.add_comment(ticket, customer, f"You wrote: {MARKER}")
    sim.add_comment(ticket, agent, f"Quoting the bot: {MARKER}", public=False)
    adapter = make_adapter(sim)
    assert adapter.find_posted(adapter.get_ticket(str(ticket)), MARKER) is None
    posted = adapter.post_draft(str(ticket), f"Answer\n\n— {MARKER}")
    assert adapter.find_posted(adapter.get_ticket(str(ticket)), MARKER) == posted.external_id


# ----- authentication, permissions, limits -----------------------------------------------------
def test_check_names_the_account_and_refuses_what_cannot_answer(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    assert "Uppzy Bot" in make_adapter(sim).check()
    with pytest.raises(AuthenticationFailed):
        make_adapter(sim, auth={"email": sim.bot_email, "api_token": "wrong"}).check()
    with pytest.raises(PermissionDenied, match="no service desk 7"):
        make_adapter(sim, service_desk_ids=[7]).check()
    with sim.lock:
        sim.site.accounts[sim.bot].account_type = "customer"
    with pytest.raises(PermissionDenied, match="customer"):
        make_adapter(sim).check()


def test_oauth_renews_an_expired_token_and_keeps_the_rotated_refresh_token(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    store = MemoryCredentials()
    original = sim.authorize()
    adapter = make_adapter(sim, store, auth=oauth(sim, original))
    adapter.check()
    sim.expire_access_tokens()
    sim.create_request(sim.add_account("Cy", "customer"), "Hello")
    assert len(ids(walk(adapter, None)[0])) == 1  # a 401, a renewal, the same poll again
    assert len(sim.refresh_tokens_used) == 2 and sim.refresh_tokens_used[0] == original
    stored = store.read(adapter.tokens.store_key)  # type: ignore[union-attr]
    assert stored not in (None, *sim.refresh_tokens_used)  # the newest, not yet used
    again = make_adapter(sim, MemoryCredentials(), auth=oauth(sim, original))
    with pytest.raises(AuthenticationFailed):  # the rotated-away token is dead
        again.check()


def test_a_429_waits_for_retry_after_and_a_long_one_is_raised(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="search", status=429, retry_after=1, times=1))
    started = time.monotonic()
    walk(adapter, None)
    assert time.monotonic() - started >= 0.95
    sim.add_fault(Fault(endpoint="search", status=429, retry_after=30, times=1))
    with pytest.raises(RateLimited) as caught:
        adapter.poll_changes(None, LONG_AGO)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 25
    sim.add_fault(Fault(endpoint="myself", status=429, retry_after=2, times=1))
    answer = requests.get(f"{sim.url}/rest/api/3/myself", headers=adapter.auth_headers(),
                          timeout=5)
    assert answer.headers["Retry-After"] == "2"
    assert answer.headers["RateLimit-Reason"] == "jira-burst-based"
    assert "X-RateLimit-Reset" in answer.headers


def test_secrets_never_reach_the_logs(
    sim: JsmSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    customer = sim.add_account("Cy", "customer")
    ticket = sim.create_request(customer, "Secret question text")
    store = MemoryCredentials()
    with caplog.at_level(logging.DEBUG):
        basic = make_adapter(sim)
        basic.list_messages(basic.get_ticket(str(ticket)))
        bearer = make_adapter(sim, store, auth=oauth(sim))
        bearer.check()
    for secret in (sim.bot_api_token, sim.oauth_client[1], *sim.refresh_tokens_used,
                   basic.auth_headers()["Authorization"].split()[1],
                   bearer.auth_headers()["Authorization"].split()[1]):
        assert secret not in caplog.text
    assert "Secret question text" not in "\n".join(
        r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG)


# ----- backfill and webhooks -------------------------------------------------------------------
def test_backfill_lists_the_window_without_touching_the_cursor(
    sim: JsmSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_account("Cy", "customer")
    tickets = [str(sim.create_request(customer, f"Q{i}")) for i in range(4)]
    listed = [t.external_id for page in make_adapter(sim, page_size=2).list_tickets(
        LONG_AGO, None) for t in page]
    assert sorted(set(listed)) == sorted(tickets)
    assert list(make_adapter(sim).list_tickets(LONG_AGO, LONG_AGO + timedelta(minutes=1))) \
        in ([], [[]])


def test_webhooks_are_verified_by_their_sha256_hub_signature(make_adapter: MakeAdapter,
                                                             sim: JsmSimulator) -> None:
    secret = "a-webhook-secret-of-jira"
    adapter = make_adapter(sim, webhook_secret=secret)
    body = json.dumps({"webhookEvent": "comment_created",
                       "issue": {"id": "10042", "key": "SD-42"}}).encode()
    signed = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature": signed, "x-atlassian-webhook-identifier": "d-1"}
    assert adapter.accepts_webhooks() and adapter.verify_webhook(headers, body)
    assert not adapter.verify_webhook({"x-hub-signature": signed}, body + b" ")
    assert not adapter.verify_webhook({"x-hub-signature": signed.replace("sha256", "sha1")},
                                      body)
    assert adapter.webhook_ticket_ids(headers, body) == ["10042"]
    assert adapter.webhook_delivery_id(headers) == "d-1"


# ----- the engine end to end -------------------------------------------------------------------
@pytest.mark.parametrize("use_oauth", [False, True], ids=["api-token", "oauth"])
def test_engine_answers_each_customer_turn_once_through_faults_closes_and_reopens(
    tmp_path: Path, uppzy: UppzySimulator, use_oauth: bool
) -> None:
    """30 requests with customers, colleagues, agents, notes and automation mixed: one internal
    comment per customer turn and none for anything else; Done closes the session once; a
    reopened request continues in session ``-2``; 429s, 5xx bursts and expired tokens change
    nothing of that."""
    with JsmSimulator() as sim:
        auth = oauth(sim) if use_oauth else sim.adapter_config()["auth"]
        engine = Runtime(parse_config({
            "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                      "poll_interval": "0.2s", "answer_timeout": "20s"},
            "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
            "adapters": [{"name": "hd", "type": "jsm", "url": sim.url, "auth": auth,
                          "start_from": "10m", "poll_interval": "0.5s"}],
            "engine": {"tick": "0.1s"},
        }))
        engine.start()
        try:
            _play_the_conversation(sim, engine, uppzy)
        finally:
            engine.shutdown(grace=2)
            engine.db.dispose()
        assert sim.call_count("oauth_token") == (2 if use_oauth else 0)  # one renewal


def _play_the_conversation(sim: JsmSimulator, engine: Runtime, uppzy: UppzySimulator) -> None:
    agent = sim.add_account("Agent Smith", "atlassian", agent=True)
    automation = sim.add_account("Automation for Jira", "app")
    reporters = [sim.add_account(f"Person {i}", "atlassian" if i % 6 == 0 else "customer")
                 for i in range(30)]
    tickets = [sim.create_request(r, f"Question {i} from a customer")
               for i, r in enumerate(reporters)]
    expected = {t: [f"Question {i} from a customer"] for i, t in enumerate(tickets)}

    def cycle() -> None:
        for _ in range(2):
            assert engine.run_once(), "the engine did not finish its work"

    sim.add_fault(Fault(endpoint="search", status=429, retry_after=1, times=1))
    sim.add_fault(Fault(endpoint="comments", status=503, times=4))
    cycle()
    assert not uppzy.closed_sessions(), "a session was closed early"
    for i, ticket in enumerate(tickets):
        if i % 3 == 0:
            sim.add_comment(ticket, agent, f"Agent answers {i}")
        if i % 3 == 1:
            sim.add_comment(ticket, agent, f"Agent notes {i}", public=False)
        if i % 5 == 0:
            sim.add_comment(ticket, automation, f"Automation says {i}")
        if i % 2 == 0:
            sim.add_comment(ticket, reporters[i], f"Follow-up {i} from the customer")
            expected[ticket].append(f"Follow-up {i} from the customer")
    sim.expire_access_tokens()
    sim.add_fault(Fault(endpoint="comment_create", status=502, times=2))
    sim.add_fault(Fault(endpoint="request", status=500, times=3))
    cycle()
    _assert_one_post_per_turn(sim, uppzy, expected)
    done = tickets[:6]
    for ticket in done[:5]:
        sim.set_status(ticket, "Resolved")
    sim.set_status(done[5], "Canceled")
    cycle()
    closed = uppzy.closed_sessions()
    assert {f"hd-{t}": 1 for t in done} == {s: n for s, n in closed.items()}, closed
    sim.add_comment(done[0], reporters[0], "It broke again")
    sim.set_status(done[0], "Waiting for support")
    expected[done[0]].append("It broke again")
    cycle()
    cycle()  # nothing more happens: nothing twice
    _assert_one_post_per_turn(sim, uppzy, expected)
    assert uppzy.questions(f"hd-{done[0]}-2") == ["It broke again"]


def _assert_one_post_per_turn(sim: JsmSimulator, uppzy: UppzySimulator,
                              expected: dict[int, list[str]]) -> None:
    for ticket, questions in expected.items():
        asked = uppzy.questions(f"hd-{ticket}") + uppzy.questions(f"hd-{ticket}-2")
        assert [q.strip() for q in asked] == questions, (ticket, asked)
        ours = [c for c in sim.comments(ticket) if c["author"] == sim.bot]
        assert len(ours) == len(questions) and not any(c["public"] for c in ours), (
            ticket, ours)
