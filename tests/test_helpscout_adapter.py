"""The Help Scout adapter against the Help Scout simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from pydantic import ValidationError
from support import SeenCalls

from adapters.base import ChangePage, Role, Ticket
from adapters.helpscout import HelpScoutAdapter, HelpScoutSettings
from adapters.helpscout.simulator import HelpScoutSimulator
from adapters.registry import adapter_class
from adapters.simulation import Fault
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

AUTH = {"app_id": "hs-app-id", "app_secret": "hs-app-secret"}
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)

MakeAdapter = Callable[..., HelpScoutAdapter]


@pytest.fixture
def sim() -> Iterator[HelpScoutSimulator]:
    simulator = HelpScoutSimulator()
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[HelpScoutAdapter] = []

    def make(simulator: HelpScoutSimulator, **overrides: Any) -> HelpScoutAdapter:
        config: dict[str, Any] = {
            "name": "hs", "type": "helpscout", "url": simulator.url, "auth": AUTH,
        }
        adapter = HelpScoutAdapter(HelpScoutSettings(**{**config, **overrides}))
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def customer(sim: HelpScoutSimulator) -> int:
    return sim.add_customer("Carla", "Jones", email="carla@example.com")


@pytest.fixture
def agent(sim: HelpScoutSimulator) -> int:
    return sim.add_user("Alex", "Agent", email="alex@example.com")


def list_urls(sim: HelpScoutSimulator) -> SeenCalls[str]:
    """Every conversation-list URL the adapter really requested, as the simulator received it."""
    return SeenCalls(sim, lambda call: call.path == "/v2/conversations", lambda call: call.url)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def walk(adapter: HelpScoutAdapter, cursor: str | None) -> tuple[list[ChangePage], str]:
    """Poll until the list says there is nothing more right now (bounded)."""
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        assert len(pages) < 50, "the walk never ends"
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


def statuses(sim: HelpScoutSimulator, endpoint: str) -> list[int]:
    return [call.status for call in sim.calls if call.endpoint == endpoint]


# ----- settings ----------------------------------------------------------------------------------
def test_settings_default_to_the_api_and_hide_the_secret() -> None:
    settings = HelpScoutSettings(name="hs", type="helpscout", auth=AUTH)
    assert settings.url == "https://api.helpscout.net"
    assert "hs-app-secret" not in repr(settings)
    copied = HelpScoutSettings(name="hs", type="helpscout", auth=AUTH,
                               url="https://api.helpscout.net/v2/")
    assert copied.url == "https://api.helpscout.net"
    with pytest.raises(ValidationError) as missing:
        HelpScoutSettings(name="hs", type="helpscout", auth={"app_id": "x"})
    assert "auth.app_secret" in str(missing.value)
    with pytest.raises(ValidationError) as extra:
        HelpScoutSettings(name="hs", type="helpscout", auth=AUTH, page_size=5)
    assert "page_size" in str(extra.value)
    with pytest.raises(ValidationError) as mailboxes:
        HelpScoutSettings(name="hs", type="helpscout", auth=AUTH, mailbox_ids=["support"])
    assert "mailbox_ids" in str(mailboxes.value)


def test_adapter_is_found_through_its_entry_point() -> None:
    cls = adapter_class("helpscout")
    assert cls is HelpScoutAdapter
    assert cls.capabilities.drafts and cls.capabilities.webhook == "helpscout-hmac-sha1"


# ----- OAuth -------------------------------------------------------------------------------------
def test_check_names_the_app_owner_with_one_token(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim)
    assert adapter.check() == f"admin {sim.bot_user_id} (Uppzy Bot)"
    adapter.poll_changes(None, LONG_AGO)
    assert sim.call_count("oauth_token") == 1


def test_wrong_secret_is_an_authentication_failure_without_the_secret(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim, auth={"app_id": "hs-app-id", "app_secret": "wrong-secret"})
    with pytest.raises(AuthenticationFailed) as failure:
        adapter.check()
    assert failure.value.status == 401 and "invalid_client" in str(failure.value)
    assert "wrong-secret" not in str(failure.value)
    assert sim.call_count("users_me") == 0  # nothing is sent without a token


def test_token_is_renewed_before_it_expires(make_adapter: MakeAdapter) -> None:
    with HelpScoutSimulator(token_lifetime=2) as sim:
        adapter = make_adapter(sim)
        adapter.check()
        time.sleep(1.1)  # past half the lifetime: renewed before Help Scout would refuse it
        adapter.check()
        assert sim.call_count("oauth_token") == 2
        assert 401 not in statuses(sim, "users_me")


def test_revoked_token_is_replaced_once_on_401(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    adapter = make_adapter(sim)
    adapter.get_ticket(str(conversation))
    sim.expire_tokens()
    assert adapter.get_ticket(str(conversation)).external_id == str(conversation)
    assert statuses(sim, "conversation_show") == [200, 401, 200]
    assert sim.call_count("oauth_token") == 2


def test_check_refuses_mailboxes_the_user_cannot_see(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter
) -> None:
    visible = sim.add_mailbox("Sales")
    assert make_adapter(sim, mailbox_ids=[visible]).check().startswith("admin")
    with pytest.raises(PermissionDenied, match="424242"):
        make_adapter(sim, mailbox_ids=[visible, 424242]).check()


# ----- polling -----------------------------------------------------------------------------------
def test_poll_asks_for_every_status_and_reports_resolution(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    active, pending, closed, spam = (
        sim.create_conversation(customer, f"q{n}") for n in range(4)
    )
    sim.set_status(pending, "pending")
    sim.set_status(closed, "closed")
    sim.set_status(spam, "spam")
    default_list = requests.get(f"{sim.url}/v2/conversations", timeout=5, headers={
        "Authorization": make_adapter(sim).auth_headers()["Authorization"],
    }).json()
    assert [c["id"] for c in default_list["_embedded"]["conversations"]] == [active]

    adapter = make_adapter(sim)
    urls = list_urls(sim)
    pages, _ = walk(adapter, None)
    resolved = {t.external_id: t.resolved for page in pages for t in page.tickets}
    assert resolved == {str(active): False, str(pending): False, str(closed): True,
                        str(spam): True}
    asked = query(urls[0])
    assert (asked["status"], asked["sortField"], asked["sortOrder"]) == ("all", "createdAt", "asc")


def test_walk_across_pages_misses_nothing_while_conversations_change(
    make_adapter: MakeAdapter,
) -> None:
    with HelpScoutSimulator(page_size=3) as sim:
        customer = sim.add_customer("Carla")
        conversations = [str(sim.create_conversation(customer, f"q{n}")) for n in range(8)]
        adapter = make_adapter(sim)
        urls = list_urls(sim)

        first = adapter.poll_changes(None, LONG_AGO)
        assert ids([first]) == conversations[:3] and first.more
        sim.add_customer_reply(int(conversations[1]), "read already: comes again next walk")
        sim.add_customer_reply(int(conversations[5]), "not read yet: comes once")
        conversations.append(str(sim.create_conversation(customer, "born while paging")))
        rest, cursor = walk(adapter, first.cursor)
        seen = Counter(ids([first, *rest]))
        assert set(seen) == set(conversations) and all(n == 1 for n in seen.values())
        since = {query(url)["modifiedSince"] for url in urls}
        assert len(since) == 1  # one fixed window for the whole walk
        assert [query(url)["page"] for url in urls] == ["1", "2", "3"]

        again, _ = walk(adapter, cursor)  # the next walk overlaps the previous one
        assert conversations[1] in ids(again)
        assert query(urls[-1])["modifiedSince"] > since.pop()


def test_walk_steps_back_when_conversations_leave_the_list(make_adapter: MakeAdapter) -> None:
    with HelpScoutSimulator(page_size=3) as sim:
        customer = sim.add_customer("Carla")
        conversations = [str(sim.create_conversation(customer, f"q{n}")) for n in range(9)]
        adapter = make_adapter(sim)
        first = adapter.poll_changes(None, LONG_AGO)
        sim.restrict(int(conversations[0]))  # every later one moves up a place
        rest, _ = walk(adapter, first.cursor)
        assert set(conversations) <= set(ids([first, *rest]))


def test_a_change_the_index_shows_late_is_still_seen(make_adapter: MakeAdapter) -> None:
    with HelpScoutSimulator(index_lag=2) as sim:
        customer = sim.add_customer("Carla")
        adapter = make_adapter(sim)
        _, cursor = walk(adapter, None)
        conversation = str(sim.create_conversation(customer, "just now"))
        time.sleep(1.05)  # the next walk starts a second later than the change...
        pages, cursor = walk(adapter, cursor)
        assert ids(pages) == []  # ...which is not in Help Scout's index yet
        deadline = time.monotonic() + 10
        while conversation not in ids(pages):
            assert time.monotonic() < deadline, "the late change was never reported"
            time.sleep(0.2)
            pages, cursor = walk(adapter, cursor)


def test_mailbox_filter(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    sales = sim.add_mailbox("Sales")
    wanted = sim.create_conversation(customer, "buy", mailbox_id=sales)
    sim.create_conversation(customer, "help")
    pages, _ = walk(make_adapter(sim, mailbox_ids=[sales]), None)
    assert ids(pages) == [str(wanted)]


def test_empty_pages_have_no_embedded_list(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim)
    answer = requests.get(f"{sim.url}/v2/conversations?status=all", timeout=5,
                          headers=adapter.auth_headers()).json()
    assert "_embedded" not in answer and answer["page"]["totalElements"] == 0
    page = adapter.poll_changes(None, LONG_AGO)
    assert page.tickets == [] and not page.more


def test_malformed_list_items_are_skipped_and_the_rest_kept(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [sim.create_conversation(customer, "fine"), sim.create_conversation(customer, "ok")]
    broken = {**sim.conversation_json(good[0]), "subject": "secret customer words", "id": None}
    sim.add_fault(Fault(endpoint="conversations_list", status=200, body={
        "_embedded": {"conversations": [sim.conversation_json(good[0]), broken, "junk",
                                        sim.conversation_json(good[1])]},
        "page": {"size": 25, "totalElements": 4, "totalPages": 1, "number": 1},
    }))
    with caplog.at_level(logging.WARNING, logger="adapters.helpscout"):
        page = make_adapter(sim).poll_changes(None, LONG_AGO)
    assert ids([page]) == [str(good[0]), str(good[1])] and not page.more
    assert len(caplog.records) == 2 and "secret customer words" not in caplog.text


def test_an_unreadable_cursor_restarts_from_start_from(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conversation = str(sim.create_conversation(customer, "hello"))
    with caplog.at_level(logging.WARNING, logger="adapters.helpscout"):
        page = make_adapter(sim).poll_changes("garbage", LONG_AGO)
    assert ids([page]) == [conversation] and "unreadable cursor" in caplog.text


def test_backfill_lists_a_window(
    make_adapter: MakeAdapter,
) -> None:
    with HelpScoutSimulator(page_size=2) as sim:
        customer = sim.add_customer("Carla")
        conversations = [str(sim.create_conversation(customer, f"q{n}")) for n in range(5)]
        adapter = make_adapter(sim)
        pages = list(adapter.list_tickets(LONG_AGO, None))
        assert len(pages) == 3 and [t.external_id for p in pages for t in p] == conversations
        assert list(adapter.list_tickets(LONG_AGO, LONG_AGO + timedelta(minutes=1))) == [[]] * 3
        later = datetime.now(UTC) + timedelta(hours=1)
        assert [t for p in adapter.list_tickets(later, None) for t in p] == []


# ----- tickets -----------------------------------------------------------------------------------
def test_ticket_fields_are_normalised(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hi", subject="Late order", tags=["vip"])
    ticket = make_adapter(sim).get_ticket(str(conversation))
    assert (ticket.subject, ticket.requester_id, ticket.requester_email, ticket.channel) == (
        "Late order", str(customer), "carla@example.com", "email",
    )
    assert ticket.tags == {"vip"} and ticket.status == "active" and not ticket.resolved
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo == UTC
    assert abs(ticket.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    number = sim.conversations[conversation].number
    assert ticket.url == f"https://secure.helpscout.net/conversation/{conversation}/{number}/"


def test_merged_deleted_and_foreign_conversations(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    merged, target, deleted = (sim.create_conversation(customer, f"q{n}") for n in range(3))
    sim.merge(merged, target)
    sim.delete(deleted)
    adapter = make_adapter(sim)
    with pytest.raises(Moved):
        adapter.get_ticket(str(merged))
    with pytest.raises(NotFound):
        adapter.list_messages(Ticket(external_id=str(merged), status="", resolved=False))
    with pytest.raises(NotFound):
        adapter.get_ticket(str(deleted))
    listed = {t.external_id: t for page in walk(adapter, None)[0] for t in page.tickets}
    assert str(merged) not in listed and listed[str(deleted)].resolved
    calls = sim.call_count()
    for ticket_id in ("../users/me", "12.5", ""):
        with pytest.raises(NotFound):
            adapter.get_ticket(ticket_id)
    assert sim.call_count() == calls


# ----- messages ----------------------------------------------------------------------------------
def test_roles_visibility_and_order(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    ai = sim.add_user("AI", "Answers", system=True)
    conversation = sim.create_conversation(customer, "My parcel is late")
    steps = [
        sim.add_note(conversation, agent, "Checking with the courier"),
        sim.add_reply(conversation, agent, "It ships tomorrow", status="pending"),
        sim.add_reply(conversation, ai, "I am an AI: it ships tomorrow"),
        sim.run_workflow(conversation, "Thanks", reply="Thanks for writing in"),
        sim.add_customer_reply(conversation, "Thank you!"),
        sim.add_reply(conversation, agent, "Half-written answer", draft=True),
        sim.add_chat(conversation, "Are you there?"),
        sim.add_chat(conversation, "Yes", user_id=agent),
        sim.set_status(conversation, "closed", user_id=agent),
    ]
    adapter = make_adapter(sim)
    messages = adapter.list_messages(adapter.get_ticket(str(conversation)))
    summary = [(m.body, m.role, m.public) for m in messages]
    assert summary == [
        ("My parcel is late", Role.CUSTOMER, True),
        ("Checking with the courier", Role.AGENT, False),
        ("It ships tomorrow", Role.AGENT, True),
        ("I am an AI: it ships tomorrow", Role.SYSTEM, True),
        ("", Role.SYSTEM, False),  # the workflow's line item
        ("Thanks for writing in", Role.SYSTEM, True),
        ("Thank you!", Role.CUSTOMER, True),
        ("Half-written answer", Role.AGENT, False),
        ("Are you there?", Role.CUSTOMER, True),
        ("Yes", Role.AGENT, True),
        ("", Role.SYSTEM, False),  # the status change
    ]
    assert messages[-1].external_id == str(steps[-1])
    assert messages[1].author_id == str(agent)
    # v2 would have called the AI a user: v3 is what tells them apart.
    v2 = requests.get(f"{sim.url}/v2/conversations/{conversation}/threads", timeout=5,
                      headers=adapter.auth_headers()).json()["_embedded"]["threads"]
    assert {t["createdBy"]["type"] for t in v2 if t["id"] == steps[2]} == {"user"}


def test_customer_text_loses_quotes_and_agent_text_is_kept_whole(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    conversation = sim.create_conversation(
        customer,
        "<p>Hi team &amp; thanks</p><ol><li>Order #42</li></ol>"
        '<p>See <a href="https://shop.example/o/42">my order</a></p>'
        "<p>On Mon, Jan 6, 2025 at 10:00 AM Support &lt;help@example.com&gt; wrote:</p>"
        "<blockquote>Old answer</blockquote>",
        html=True,
    )
    sim.add_reply(conversation, agent, "Here you go.\n\nBest regards,\nAlex\n\n— AI draft, x")
    adapter = make_adapter(sim)
    question, answer = adapter.list_messages(adapter.get_ticket(str(conversation)))
    assert question.body == (
        "Hi team & thanks\n\n  1. Order #42\n\nSee [my order](https://shop.example/o/42)"
    )
    assert answer.body == "Here you go.\n\nBest regards,\nAlex\n\n— AI draft, x"


def test_threads_are_read_across_pages(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "message 0")
    for n in range(1, 60):
        sim.add_customer_reply(conversation, f"message {n}")
    adapter = make_adapter(sim)
    messages = adapter.list_messages(adapter.get_ticket(str(conversation)))
    assert [m.body for m in messages] == [f"message {n}" for n in range(60)]
    assert sim.call_count("threads_v3") == 2


def test_threads_follow_the_next_link_on_our_own_host_when_no_page_count_is_given(
    make_adapter: MakeAdapter,
) -> None:
    """Help Scout's pages link to each other on its own host; the links are what says that a
    further page exists. The adapter follows them, but only to the simulator's address."""
    with HelpScoutSimulator(v3_page_info=False, link_base="https://api.helpscout.net") as sim:
        conversation = sim.create_conversation(sim.add_customer("Carla"), "message 0")
        for n in range(1, 60):
            sim.add_customer_reply(conversation, f"message {n}")
        adapter = make_adapter(sim)
        pages = SeenCalls(sim, lambda call: call.endpoint == "threads_v3",
                          lambda call: query(call.url))
        messages = adapter.list_messages(adapter.get_ticket(str(conversation)))
        assert [m.body for m in messages] == [f"message {n}" for n in range(60)]
        assert [page.get("page") for page in pages] == ["1", "2"]


def test_a_next_link_to_another_path_is_not_followed(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    sim.add_fault(Fault(endpoint="threads_v3", status=200, body={
        "_embedded": {"threads": sim.threads(conversation)},
        "_links": {"next": {"href": f"{sim.url}/v2/users/me?page=2"}},
    }))
    adapter = make_adapter(sim)
    with pytest.raises(MalformedResponse, match="next link"):
        adapter.list_messages(adapter.get_ticket(str(conversation)))
    assert sim.call_count("users_me") == 0


def test_malformed_threads_are_skipped_with_a_warning_naming_the_conversation(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conversation = sim.create_conversation(customer, "secret customer words")
    sim.add_customer_reply(conversation, "more secret words")
    threads = sim.threads(conversation)
    threads[1]["body"] = ["not", "text"]
    sim.add_fault(Fault(endpoint="threads_v3", status=200, body={
        "_embedded": {"threads": threads},
        "page": {"size": 50, "totalElements": 2, "totalPages": 1, "number": 1},
    }))
    adapter = make_adapter(sim)
    ticket = adapter.get_ticket(str(conversation))
    with caplog.at_level(logging.WARNING, logger="adapters.helpscout"):
        assert [m.body for m in adapter.list_messages(ticket)] == ["secret customer words"]
        sim.corrupt(conversation)  # the first thread loses its id
        assert [m.body for m in adapter.list_messages(ticket)] == ["more secret words"]
    assert len(caplog.records) == 2 and "secret" not in caplog.text
    assert all(str(conversation) in record.getMessage() for record in caplog.records)


def test_threads_that_never_end_are_refused(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    sim.add_fault(Fault(endpoint="threads_v3", status=200, times=None, body={
        "page": {"size": 50, "totalElements": 10**6, "totalPages": 10**5, "number": 1},
    }))
    adapter = make_adapter(sim)
    with pytest.raises(MalformedResponse, match="pages of threads"):
        adapter.list_messages(adapter.get_ticket(str(conversation)))


# ----- posting -----------------------------------------------------------------------------------
def test_post_draft_is_a_real_draft_that_keeps_the_status(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    conversation = sim.create_conversation(customer, "Where is my parcel?")
    sim.add_reply(conversation, agent, "Let me check", status="pending")
    adapter = make_adapter(sim)

    posted = adapter.post_draft(str(conversation), "It ships <tomorrow>.\nTracking: 42\n\n— AI")

    draft = sim.posts_by(sim.bot_user_id)[-1]
    assert (posted.external_id, posted.kind) == (str(draft["id"]), "draft")
    assert (draft["type"], draft["state"], draft["customer"]["id"]) == (
        "message", "draft", customer,
    )
    assert draft["body"] == "<p>It ships &lt;tomorrow&gt;.<br>Tracking: 42</p><p>— AI</p>"
    assert sim.conversations[conversation].status == "pending"
    ticket = adapter.get_ticket(str(conversation))
    last = adapter.list_messages(ticket)[-1]
    assert (last.external_id, last.role, last.public) == (posted.external_id, Role.AGENT, False)
    assert last.body == "It ships <tomorrow>.\nTracking: 42\n\n— AI"
    assert adapter.find_posted(ticket, "— AI") == posted.external_id

    sim.send_draft(int(posted.external_id))  # an agent sends it: same thread, now public
    sent = adapter.list_messages(ticket)[-1]
    assert (sent.external_id, sent.public) == (posted.external_id, True)


def test_simulator_reactivates_on_a_reply_without_status_but_not_on_a_note(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    sim.set_status(conversation, "pending")
    headers = make_adapter(sim).auth_headers()
    base = f"{sim.url}/v2/conversations/{conversation}"
    note = requests.post(f"{base}/notes", json={"text": "a note"}, headers=headers, timeout=5)
    assert note.status_code == 201 and sim.conversations[conversation].status == "pending"
    unaddressed = requests.post(f"{base}/reply", json={"text": "draft", "draft": True},
                                headers=headers, timeout=5)
    assert unaddressed.status_code == 400 and "customer" in unaddressed.text
    reply = requests.post(
        f"{base}/reply", json={"customer": {"id": customer}, "text": "draft", "draft": True},
        headers=headers, timeout=5,
    )
    assert reply.status_code == 201 and reply.headers["Resource-ID"].isdigit()
    assert sim.conversations[conversation].status == "active"


def test_post_draft_without_resource_id_is_malformed(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    sim.add_fault(Fault(endpoint="reply_create", status=201))
    with pytest.raises(MalformedResponse, match="Resource-ID"):
        make_adapter(sim).post_draft(str(conversation), "text")


def test_post_draft_is_not_repeated_after_a_server_error_but_is_after_429(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="reply_create", status=503))
    with pytest.raises(ServerError):
        adapter.post_draft(str(conversation), "first try")
    assert sim.call_count("reply_create") == 1

    sim.add_fault(Fault(endpoint="reply_create", status=429, retry_after=0))
    adapter.post_draft(str(conversation), "second try")
    assert sim.call_count("reply_create") == 3
    assert [p["body"] for p in sim.posts_by(sim.bot_user_id)] == ["<p>second try</p>"]


# ----- rate limits -------------------------------------------------------------------------------
def test_x_ratelimit_retry_after_is_honoured(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="conversation_show", status=429, retry_after=1))
    adapter.get_ticket(str(conversation))
    refused, served = [c for c in sim.calls if c.endpoint == "conversation_show"]
    assert (refused.status, served.status) == (429, 200)
    assert served.at - refused.at >= 0.99


def test_per_minute_limit_counts_writes_twice_and_parks_long_waits(
    make_adapter: MakeAdapter,
) -> None:
    with HelpScoutSimulator(rate_limit=5) as sim:
        conversation = sim.create_conversation(sim.add_customer("Carla"), "hello")
        adapter = make_adapter(sim)
        headers = adapter.auth_headers()
        answer = requests.get(f"{sim.url}/v2/users/me", headers=headers, timeout=5)
        assert answer.headers["X-RateLimit-Limit-Minute"] == "5"
        assert answer.headers["X-RateLimit-Remaining-Minute"] == "4"
        adapter.post_draft(str(conversation), "a draft")  # a read and a write: 3 more
        answer = requests.get(f"{sim.url}/v2/users/me", headers=headers, timeout=5)
        assert answer.headers["X-RateLimit-Remaining-Minute"] == "0"
        assert answer.headers.get("Retry-After") is None  # only Help Scout's own header
        with pytest.raises(RateLimited) as limited:
            adapter.get_ticket(str(conversation))
        assert limited.value.retry_after is not None and limited.value.retry_after > 50


def test_simulator_refuses_the_thirteenth_write_within_five_seconds(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    headers = make_adapter(sim).auth_headers()
    url = f"{sim.url}/v2/conversations/{conversation}/notes"
    answers = [requests.post(url, json={"text": f"note {n}"}, headers=headers, timeout=5)
               for n in range(13)]
    assert [a.status_code for a in answers[:12]] == [201] * 12
    refused = answers[12]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["X-RateLimit-Retry-After"]) <= 5
    assert "Retry-After" not in refused.headers
    assert requests.get(f"{sim.url}/v2/users/me", headers=headers, timeout=5).ok  # reads pass


def test_drafts_in_a_burst_are_paced_under_the_write_limit(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    conversations = [sim.create_conversation(customer, f"question {n}") for n in range(14)]
    adapter = make_adapter(sim)
    for conversation in conversations:
        adapter.post_draft(str(conversation), "an answer")
    writes = [c for c in sim.calls if c.endpoint == "reply_create"]
    assert len(writes) == 14 and all(c.status == 201 for c in writes)  # none refused


# ----- secrets -----------------------------------------------------------------------------------
def test_secrets_never_reach_the_logs(
    sim: HelpScoutSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conversation = sim.create_conversation(customer, "hello")
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        adapter = make_adapter(sim)
        adapter.check()
        walk(adapter, None)
        adapter.list_messages(adapter.get_ticket(str(conversation)))
        adapter.post_draft(str(conversation), "draft")
        sim.expire_tokens()
        sim.add_fault(Fault(endpoint="conversation_show", status=503, times=1))
        adapter.get_ticket(str(conversation))  # a 401, a new token and a retry are logged
        with pytest.raises(AuthenticationFailed) as failure:
            make_adapter(sim, auth={**AUTH, "app_secret": "wrong-secret"}).check()
        errors.append(str(failure.value))
    text = caplog.text + "\n".join(errors)
    assert "retry" in caplog.text and "oauth_token" in caplog.text  # logging did happen
    assert len(sim.issued_tokens) == 2
    for secret in ("hs-app-secret", "wrong-secret", *sim.issued_tokens):
        assert secret not in text
