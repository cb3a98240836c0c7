"""The Front adapter against the Front simulator, over real HTTP on 127.0.0.1, and the whole
engine on top of it."""

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
from sqlmodel import Session
from support import API_KEY, SeenCalls

from adapters.base import ChangePage, Role, Ticket
from adapters.front import FrontAdapter, FrontSettings
from adapters.front.simulator import FrontSimulator, SimEntry
from adapters.registry import adapter_class
from adapters.signatures import FrontAppSignature
from adapters.simulation import Fault
from connector.config import parse_config
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)
from connector.engine.runtime import Runtime
from connector.store.models import AdapterState
from connector.testing.uppzy_sim import UppzySimulator

LONG_AGO = datetime.now(UTC) - timedelta(hours=1)
MARKER = "AI draft, Uppzy ref "

MakeAdapter = Callable[..., FrontAdapter]


@pytest.fixture
def sim() -> Iterator[FrontSimulator]:
    simulator = FrontSimulator().start()
    yield simulator  # type: ignore[misc]
    simulator.stop()


@pytest.fixture
def make_adapter(sim: FrontSimulator) -> Iterator[MakeAdapter]:
    adapters: list[FrontAdapter] = []

    def make(**overrides: Any) -> FrontAdapter:
        config = {"name": "fr", "type": "front", **sim.adapter_config(), **overrides}
        adapter = FrontAdapter(FrontSettings(**config))
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


def walk(adapter: FrontAdapter, cursor: str | None) -> tuple[list[ChangePage], str]:
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        assert len(pages) < 60, "the feed never ends"
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


def event_queries(sim: FrontSimulator) -> SeenCalls[dict[str, list[str]]]:
    return SeenCalls(sim, lambda call: call.path == "/events", lambda call: call.query)


def raw(sim: FrontSimulator, method: str, path: str, *, token: str | None = None,
        **kwargs: Any) -> requests.Response:
    headers = {"Authorization": token or f"Bearer {sim.api_token}"}
    return requests.request(method, sim.url + path, headers=headers, timeout=5, **kwargs)


def drafts_of(sim: FrontSimulator, conversation: str, author: str | None = None
              ) -> list[SimEntry]:
    return [e for e in sim.conversations[conversation].entries if e.draft_mode is not None
            and (author is None or (e.author is not None and e.author.id == author))]


# ----- settings and registration -----------------------------------------------------------------
def test_settings_check_id_forms_and_hide_the_token(sim: FrontSimulator) -> None:
    config = {"name": "fr", "type": "front", **sim.adapter_config()}
    settings = FrontSettings(**{**config, "url": "https://api2.frontapp.com/"})
    assert settings.url == "https://api2.frontapp.com" and settings.page_size == 15
    assert sim.api_token not in repr(settings)
    for key, value in (("teammate_id", sim.channel), ("channel_id", sim.bot),
                       ("page_size", 16), ("inbox_ids", ["support"])):
        with pytest.raises(ValidationError) as refused:
            FrontSettings(**{**config, key: value})
        assert key in str(refused.value)


def test_adapter_is_found_through_its_entry_point() -> None:
    cls = adapter_class("front")
    assert cls is FrontAdapter
    assert cls.capabilities.drafts and cls.capabilities.webhook == "front-hmac-sha256"


# ----- what the simulator enforces ---------------------------------------------------------------
def test_simulator_refuses_what_front_refuses(sim: FrontSimulator) -> None:
    assert raw(sim, "GET", "/me", token=f"Token {sim.api_token}").status_code == 401
    assert raw(sim, "GET", "/me", token="Bearer wrong").status_code == 401
    assert raw(sim, "GET", "/events", params={"limit": 16}).status_code == 400
    assert raw(sim, "GET", "/events", params={"q[after]": "1700000000000"}).status_code == 400
    assert raw(sim, "GET", "/events", params={"q[types][]": "draft"}).status_code == 400
    conversation = sim.create_conversation("Ann", "Hi")
    path = f"/conversations/{conversation}/drafts"
    assert raw(sim, "POST", path, json={"body": "x"}).status_code == 400  # no channel_id
    assert raw(sim, "POST", path, json={"body": "x", "channel_id": sim.channel,
                                        "mode": "public"}).status_code == 400
    assert raw(sim, "GET", "/conversations/cnv_zzzz").status_code == 404
    answer = raw(sim, "GET", "/me")
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= {
        name.lower() for name in answer.headers}


# ----- check -------------------------------------------------------------------------------------
def test_check_names_company_teammate_and_channel(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    description = make_adapter().check()
    assert "Simulated Company" in description and sim.bot in description
    assert sim.channel in description and "Uppzy Assistant" in description
    with pytest.raises(NotFound, match=r"teammate_id"):
        make_adapter(teammate_id="tea_nobody").check()
    with pytest.raises(NotFound, match=r"channel_id"):
        make_adapter(channel_id="cha_nowhere").check()


def test_wrong_token_fails_with_401_and_the_token_is_never_shown(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(auth={"token": "revoked-front-token"})
    for call in (adapter.check, lambda: adapter.poll_changes(None, LONG_AGO)):
        with pytest.raises(AuthenticationFailed) as failure:
            call()
        assert "revoked-front-token" not in str(failure.value)
    assert all(c.status == 401 for c in sim.calls)


# ----- the change feed ---------------------------------------------------------------------------
def test_feed_asks_as_documented_and_walks_every_page(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(page_size=4)
    queries = event_queries(sim)
    conversations = [sim.create_conversation(f"C{i}", f"Question {i}") for i in range(9)]
    for conversation in conversations[:3]:
        sim.comment(conversation, sim.agent, "internal")
    pages, cursor = walk(adapter, None)
    assert ids(pages) and set(ids(pages)) == set(conversations)
    assert len(pages) == 3  # 12 events, 4 a page
    first = queries[0]
    assert first["sort_order"] == ["asc"] and first["limit"] == ["4"]
    assert {"inbound", "archive", "trash", "reopen"} <= set(first["q[types][]"])
    after = first["q[after]"][0]
    assert abs(float(after) - LONG_AGO.timestamp()) < 0.002 and len(after.split(".")[1]) == 3
    assert all("page_token" in q for q in queries[1:3])
    newest = sim.events[-1].emitted_at
    sim.customer_writes(conversations[5], "Later")
    again, _ = walk(adapter, cursor)
    assert float(queries[3]["q[after]"][0]) == pytest.approx(newest - 2, abs=0.002)
    assert conversations[5] in ids(again)


def test_a_quiet_feed_reports_nothing_twice(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    """The overlap re-reads the last events; those already reported are not reported again,
    so a quiet account's last conversation is not read at every poll."""
    adapter = make_adapter()
    conversation = sim.create_conversation("Ann", "Hi")
    first, cursor = walk(adapter, None)
    assert ids(first) == [conversation]
    again, cursor = walk(adapter, cursor)
    assert ids(again) == []
    sim.comment(conversation, sim.agent, "a note")
    assert ids(walk(make_adapter(), cursor)[0]) == [conversation]


def test_a_walk_resumes_mid_way_with_a_new_adapter(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversations = [sim.create_conversation(f"C{i}", f"Q{i}") for i in range(6)]
    first = make_adapter(page_size=2).poll_changes(None, LONG_AGO)
    assert first.more
    rest, _ = walk(make_adapter(page_size=2), first.cursor)
    assert set(ids([first]) + ids(rest)) == set(conversations)
    assert not set(ids([first])) & set(ids(rest)), "resuming read a page again"


def test_feed_reports_states_and_each_conversation_once_a_page(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    archived, deleted, custom, chatty = (sim.create_conversation(n, "Hi") for n in "ABCD")
    for _ in range(3):
        sim.customer_writes(chatty, "more")
    sim.set_status(archived, "archived", "archive")
    sim.set_status(deleted, "deleted", "trash")
    sim.set_ticket_status(custom, "sts_x", "resolved")
    pages, _ = walk(adapter, None)
    reported = {t.external_id: t for page in pages for t in page.tickets}
    assert ids(pages).count(chatty) == 1
    assert all(reported[c].resolved for c in (archived, deleted, custom))
    assert not reported[chatty].resolved
    assert reported[chatty].requester_email == "d@example.org"


def test_events_without_a_conversation_are_skipped_with_a_warning(
    sim: FrontSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    good = sim.create_conversation("Ann", "Secret words")
    sim.add_fault(Fault(endpoint="events", status=200, body={"_pagination": {"next": None},
        "_results": [{"id": "evt_bad", "emitted_at": time.time(), "conversation": {"id": 7}},
                     {"id": "evt_ok", "emitted_at": time.time(), "conversation": {"id": good}}]}))
    with caplog.at_level(logging.WARNING):
        page = make_adapter().poll_changes(None, LONG_AGO)
    assert ids([page]) == [good]
    assert any("evt_bad" in r.getMessage() for r in caplog.records)
    assert not any("Secret" in r.getMessage() for r in caplog.records)


def test_backfill_lists_the_window_by_event_time(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    early = sim.create_conversation("Early", "First")
    time.sleep(0.05)
    middle = datetime.now(UTC)
    late = sim.create_conversation("Late", "Second")
    listed = [t.external_id for page in make_adapter(page_size=1).list_tickets(LONG_AGO, middle)
              for t in page]
    assert listed == [early] and late not in listed


# ----- conversations -----------------------------------------------------------------------------
def test_roles_visibility_and_order_across_the_three_lists(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversation = sim.create_conversation("Carol", "Where is my order?")
    sim.teammate_replies(conversation, sim.agent, "It ships today")
    sim.comment(conversation, sim.agent, "VIP customer")
    sim.teammate_replies(conversation, sim.rule, "We got your message")
    sim.customer_writes(conversation, "Thanks! And the invoice?\n\nOn Mon someone wrote:\n> old")
    adapter = make_adapter()
    posted = adapter.post_draft(conversation, f"Here it is.\n\n— {MARKER}r1")
    messages = adapter.list_messages(adapter.get_ticket(conversation))
    summary = [(m.role, m.public, m.body.split("\n")[0]) for m in messages]
    assert summary == [
        (Role.CUSTOMER, True, "Where is my order?"), (Role.AGENT, True, "It ships today"),
        (Role.AGENT, False, "VIP customer"), (Role.SYSTEM, True, "We got your message"),
        (Role.CUSTOMER, True, "Thanks! And the invoice?"), (Role.AGENT, False, "Here it is."),
    ]
    assert "old" not in messages[4].body
    assert messages[-1].external_id == posted.external_id
    assert messages[-1].author_id == sim.bot


def test_messages_are_read_across_pages(sim: FrontSimulator, make_adapter: MakeAdapter) -> None:
    conversation = sim.create_conversation("Carol", "Opening")
    for i in range(120):
        sim.customer_writes(conversation, f"Line {i}")
    messages = make_adapter().list_messages(Ticket(conversation, "", False))
    assert len(messages) == 121 and messages[-1].body == "Line 119"
    assert sim.call_count("messages") == 2


def test_missing_merged_and_forbidden_conversations(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    merged, target, hidden = (sim.create_conversation(n, "Hi") for n in "ABC")
    sim.merge(merged, target)
    sim.restrict(hidden)
    with pytest.raises(NotFound):
        adapter.get_ticket("cnv_zzzz")
    before = len(sim.calls)
    with pytest.raises(NotFound):
        adapter.get_ticket("../me")
    assert len(sim.calls) == before, "an id that is no cnv_ id was sent"
    with pytest.raises(Moved):
        adapter.get_ticket(merged)
    with pytest.raises(PermissionDenied):
        adapter.list_messages(Ticket(hidden, "", False))
    assert len(adapter.list_messages(adapter.get_ticket(target))) == 2


def test_a_next_link_to_another_path_is_not_followed(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversation = sim.create_conversation("Carol", "Hi")
    sim.add_fault(Fault(endpoint="comments", status=200, body={
        "_pagination": {"next": "https://evil.example/me?page_token=x"}, "_results": []}))
    with pytest.raises(MalformedResponse, match="next link"):
        make_adapter().list_messages(Ticket(conversation, "", False))


# ----- drafts ------------------------------------------------------------------------------------
def test_post_draft_is_a_shared_draft_by_our_teammate_on_our_channel(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversation = sim.create_conversation("Carol", "Help")
    posted = make_adapter().post_draft(conversation, "Line one\nLine two\n\n<b>not markup</b>")
    assert posted.kind == "draft" and posted.external_id.startswith("msg_")
    (draft,) = drafts_of(sim, conversation)
    assert (draft.id, draft.draft_mode, draft.author and draft.author.id) == (
        posted.external_id, "shared", sim.bot)
    assert draft.body == "<p>Line one<br>Line two</p><p>&lt;b&gt;not markup&lt;/b&gt;</p>"
    visible = [e for e in sim.conversations[conversation].entries
               if e.kind == "message" and e.draft_mode is None]
    assert len(visible) == 1, "the draft was sent"


def test_find_posted_finds_only_our_teammates_entry(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversation = sim.create_conversation("Carol", f"I saw {MARKER}r7 somewhere")
    sim.comment(conversation, sim.agent, f"pasting {MARKER}r7")
    sim.teammate_replies(conversation, sim.agent, f"quoting {MARKER}r7")
    ticket = Ticket(conversation, "", False)
    assert make_adapter().find_posted(ticket, MARKER + "r7") is None
    posted = make_adapter().post_draft(conversation, f"Answer\n\n— {MARKER}r7")
    # A restart after a crash: a new adapter finds the draft in the drafts list.
    assert make_adapter().find_posted(ticket, MARKER + "r7") == posted.external_id
    assert make_adapter().find_posted(ticket, MARKER + "r70") is None


def test_draft_is_not_repeated_after_a_server_error_but_is_after_a_short_429(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    conversation = sim.create_conversation("Carol", "Help")
    adapter = make_adapter()
    sim.add_fault(Fault(endpoint="draft_create", status=502))
    with pytest.raises(ServerError):
        adapter.post_draft(conversation, "once")
    assert sim.call_count("draft_create") == 1
    sim.add_fault(Fault(endpoint="draft_create", status=429, retry_after=1))
    started = time.monotonic()
    adapter.post_draft(conversation, "after the wait")
    assert time.monotonic() - started >= 0.95 and sim.call_count("draft_create") == 3
    assert len(drafts_of(sim, conversation)) == 1


def test_a_long_retry_after_is_reported_and_holds_back_every_call(
    sim: FrontSimulator, make_adapter: MakeAdapter
) -> None:
    """Front limits the company, not an endpoint: after a 429 asking for 30 s on the feed,
    a conversation read waits too, without reaching Front."""
    conversation = sim.create_conversation("Carol", "Help")
    adapter = make_adapter()
    sim.add_fault(Fault(endpoint="events", status=429, retry_after=30))
    with pytest.raises(RateLimited) as waited:
        adapter.poll_changes(None, LONG_AGO)
    assert waited.value.retry_after is not None and waited.value.retry_after >= 25
    with pytest.raises(RateLimited):
        adapter.get_ticket(conversation)
    assert sim.call_count("conversation") == 0


# ----- webhooks ----------------------------------------------------------------------------------
def test_application_webhook_signatures_and_conversation_ids(make_adapter: MakeAdapter) -> None:
    secret = "front-app-signing-key-0123"
    adapter = make_adapter(webhook_secret=secret)
    body = json.dumps({"type": "inbound_received",
                       "payload": {"conversation": {"id": "cnv_abc"}}}).encode()

    def signed(stamp: str, payload: bytes) -> dict[str, str]:
        digest = hmac.new(secret.encode(), stamp.encode() + b":" + payload, hashlib.sha256)
        return {"x-front-request-timestamp": stamp,
                "x-front-signature": base64.b64encode(digest.digest()).decode()}

    now = str(int(time.time() * 1000))
    assert adapter.verify_webhook(signed(now, body), body)
    assert not adapter.verify_webhook(signed(now, body), body + b" ")
    stale = str(int((time.time() - 600) * 1000))
    assert not adapter.verify_webhook(signed(stale, body), body)
    assert not FrontAppSignature().verify(b"other-key", signed(now, body), body)
    assert adapter.webhook_ticket_ids({}, body) == ["cnv_abc"]
    assert adapter.webhook_ticket_ids({}, b'{"type": "sync"}') == []


# ----- the engine on top -------------------------------------------------------------------------
def engine_for(tmp_path: Path, uppzy: UppzySimulator, sim: FrontSimulator,
               **adapter: Any) -> Runtime:
    config = parse_config({
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": "0.2s", "answer_timeout": "20s"},
        "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
        "adapters": [{"name": "fr", "type": "front", **sim.adapter_config(),
                      "poll_interval": "0.3s", "start_from": "10m", **adapter}],
        "engine": {"tick": "0.1s", "workers": 6},
    })
    engine = Runtime(config)
    engine.start()
    return engine


def run_until(engine: Runtime, done: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        engine.run_once()
        if done():
            return
    raise AssertionError("the engine did not get there in time")


def test_engine_drafts_once_per_customer_turn_through_faults(
    tmp_path: Path, uppzy: UppzySimulator, sim: FrontSimulator
) -> None:
    conversations = [sim.create_conversation(f"Customer {i}", f"Question {i}")
                     for i in range(30)]
    sim.add_fault(Fault(endpoint="events", status=429, retry_after=1, times=2))
    sim.add_fault(Fault(endpoint="messages", status=503, times=6))
    sim.add_fault(Fault(endpoint="draft_create", status=500, times=2))
    engine = engine_for(tmp_path, uppzy, sim)
    try:
        expected = dict.fromkeys(conversations, 1)
        run_until(engine, lambda: {c: len(drafts_of(sim, c, sim.bot)) for c in conversations}
                  == expected)
        for i, conversation in enumerate(conversations):  # none of these is a customer turn
            [lambda c: sim.teammate_replies(c, sim.agent, "human answer"),
             lambda c: sim.comment(c, sim.agent, "internal remark"),
             lambda c: sim.teammate_replies(c, sim.rule, "auto reply")][i % 3](conversation)
        for conversation in conversations[:10]:
            sim.customer_writes(conversation, f"Follow-up on {conversation}")
        expected.update(dict.fromkeys(conversations[:10], 2))
        run_until(engine, lambda: {c: len(drafts_of(sim, c, sim.bot)) for c in conversations}
                  == expected)
        closing = conversations[10:15]
        for conversation in closing:
            sim.set_status(conversation, "archived", "archive")
        run_until(engine, lambda: all(uppzy.close_calls(f"fr-{c}") for c in closing))
        sim.customer_writes(closing[0], "I am back with a new question")
        run_until(engine, lambda: len(drafts_of(sim, closing[0], sim.bot)) == 2)
        for _ in range(3):
            engine.run_once()
    finally:
        engine.shutdown(grace=2)
        engine.db.dispose()
    assert {c: len(drafts_of(sim, c, sim.bot)) for c in conversations} == {
        **expected, closing[0]: 2}
    assert [uppzy.close_calls(f"fr-{c}") for c in closing] == [1] * 5
    assert uppzy.questions(f"fr-{closing[0]}-2") == ["I am back with a new question"]
    feed_calls = [(c.at, c.status) for c in sim.calls if c.endpoint == "events"]
    refused = [at for at, status in feed_calls if status == 429]
    assert len(refused) == 2
    for at in refused:  # nothing early: each retry waited the Retry-After of 1 s
        following = min(later for later, _ in feed_calls if later > at)
        assert following - at >= 0.95
    for conversation in conversations:
        asked = uppzy.questions(f"fr-{conversation}")
        assert not any(text in " ".join(asked) for text in ("human", "internal", "auto reply"))


def test_engine_pauses_on_a_revoked_token_instead_of_retrying(
    tmp_path: Path, uppzy: UppzySimulator, sim: FrontSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.create_conversation("Carol", "Hello")
    engine = engine_for(tmp_path, uppzy, sim, auth={"token": "revoked-token-123"})
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                engine.run_once()
        with Session(engine.db) as db:
            state = db.get(AdapterState, "fr")
            assert state is not None and state.paused_until is not None
            assert "authentication failed" in (state.pause_reason or "")
            assert "revoked-token-123" not in (state.pause_reason or "")
    finally:
        engine.shutdown(grace=2)
        engine.db.dispose()
    assert sim.call_count("events") <= 2, "the revoked token was tried again and again"
    paused = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("adapter fr paused: authentication failed" in text for text in paused)
    assert not any("revoked-token-123" in r.getMessage() for r in caplog.records)
    assert sim.call_count("draft_create") == 0
