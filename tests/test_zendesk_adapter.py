"""The Zendesk adapter against the Zendesk simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
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

from adapters.base import ChangePage, Role
from adapters.registry import adapter_class
from adapters.simulation import Fault
from adapters.zendesk import ZendeskAdapter, ZendeskSettings
from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

TOKEN_AUTH = {"email": "bot@example.com", "api_token": "zd-token"}
BEARER_AUTH = {"access_token": "zd-oauth"}
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)

MakeAdapter = Callable[..., ZendeskAdapter]


@pytest.fixture
def sim() -> Iterator[ZendeskSimulator]:
    simulator = ZendeskSimulator(exclude_newest=0)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[ZendeskAdapter] = []

    def make(simulator: ZendeskSimulator, **overrides: Any) -> ZendeskAdapter:
        config: dict[str, Any] = {
            "name": "zd", "type": "zendesk", "url": simulator.url, "auth": TOKEN_AUTH,
        }
        adapter = ZendeskAdapter(ZendeskSettings(**{**config, **overrides}))
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


def export_urls(sim: ZendeskSimulator) -> SeenCalls[str]:
    """Every export URL the adapter really requested, as the simulator received it."""
    return SeenCalls(sim, lambda call: call.endpoint == "incremental_tickets",
                     lambda call: call.url)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def walk(adapter: ZendeskAdapter, cursor: str | None) -> tuple[list[ChangePage], str]:
    """Poll until the export says there is nothing more right now."""
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


# ----- settings ----------------------------------------------------------------------------------
def test_settings_errors_name_the_key_and_hide_secrets() -> None:
    base = {"name": "zd", "type": "zendesk", "url": "https://acme.zendesk.com/api/v2/"}
    with pytest.raises(ValidationError) as missing:
        ZendeskSettings(**base, auth={"email": "bot@example.com"})
    assert "auth.ZendeskTokenAuth.api_token" in str(missing.value)
    with pytest.raises(ValidationError) as extra:
        ZendeskSettings(**base, auth=BEARER_AUTH, colour="blue")
    assert "colour" in str(extra.value)
    with pytest.raises(ValidationError) as size:
        ZendeskSettings(**base, auth=BEARER_AUTH, page_size=5000)
    assert "page_size" in str(size.value)

    settings = ZendeskSettings(**base, auth=TOKEN_AUTH)
    assert settings.url == "https://acme.zendesk.com"
    assert "zd-token" not in repr(settings)


def test_adapter_is_found_through_its_entry_point() -> None:
    assert adapter_class("zendesk") is ZendeskAdapter


def test_an_api_token_warns_at_start_that_zendesk_retires_it(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    """Zendesk deactivates every API token on 2027-04-30: the operator hears it at start, with
    the key to change; an OAuth token gets no such warning."""
    with caplog.at_level(logging.WARNING, logger="adapters.zendesk"):
        make_adapter(sim, name="with-token")
        make_adapter(sim, name="with-oauth", auth=BEARER_AUTH)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "2027-04-30" in warning and "with-token" in warning and "with-oauth" not in warning
    assert "zd-token" not in caplog.text


# ----- check -------------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", [TOKEN_AUTH, BEARER_AUTH], ids=["api-token", "oauth"])
def test_check_names_the_bot_admin(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, auth: dict[str, str]
) -> None:
    description = make_adapter(sim, auth=auth).check()
    assert description == f"admin {sim.bot_user_id} (Uppzy Bot)"


def test_check_refuses_an_agent_because_the_export_needs_an_admin(
    make_adapter: MakeAdapter,
) -> None:
    with ZendeskSimulator(exclude_newest=0, bot_role="agent") as sim:
        adapter = make_adapter(sim, auth=BEARER_AUTH)
        with pytest.raises(PermissionDenied) as refused:
            adapter.check()
        assert "admin" in str(refused.value) and "incremental export" in str(refused.value)
        assert "adapters[" in str(refused.value)


def test_simulator_export_refuses_an_agent(make_adapter: MakeAdapter) -> None:
    """Fact: the incremental ticket export is allowed for admins only."""
    with ZendeskSimulator(exclude_newest=0, bot_role="agent") as sim:
        adapter = make_adapter(sim, auth=BEARER_AUTH)
        with pytest.raises(PermissionDenied) as refused:
            adapter.poll_changes(None, LONG_AGO)
        assert refused.value.status == 403 and "admin" in str(refused.value)


@pytest.mark.parametrize(
    "auth", [{"email": "bot@example.com", "api_token": "wrong"}, {"access_token": "wrong"}],
    ids=["api-token", "oauth"],
)
def test_check_rejects_wrong_credentials(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, auth: dict[str, str]
) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        make_adapter(sim, auth=auth).check()
    assert failure.value.status == 401
    assert "Couldn't authenticate you" in str(failure.value)


def test_check_treats_the_anonymous_user_as_a_failed_login(sim: ZendeskSimulator) -> None:
    class Unauthenticated(ZendeskAdapter):  # as when a proxy strips the Authorization header
        def auth_headers(self) -> dict[str, str]:
            return {}

    adapter = Unauthenticated(ZendeskSettings(
        name="zd", type="zendesk", url=sim.url, auth=BEARER_AUTH,
    ))
    with pytest.raises(AuthenticationFailed, match="anonymous"):
        adapter.check()
    adapter.close()


def test_check_refuses_an_end_user_login(sim: ZendeskSimulator, make_adapter: MakeAdapter) -> None:
    customer = sim.add_user("Carla", "end-user", email="carla@example.com")
    sim.add_api_token(customer, "carla-token")
    adapter = make_adapter(sim, auth={"email": "carla@example.com", "api_token": "carla-token"})
    with pytest.raises(PermissionDenied, match="end-user"):
        adapter.check()


# ----- incremental export ------------------------------------------------------------------------
def test_export_walk_misses_nothing_and_repeats_only_tickets_changed_again(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    tickets = [str(sim.create_ticket(customer, f"question {n}")) for n in range(8)]
    adapter = make_adapter(sim, page_size=3)
    urls = export_urls(sim)

    first = adapter.poll_changes(None, LONG_AGO)
    assert [t.external_id for t in first.tickets] == tickets[:3] and first.more
    sim.add_tags(int(tickets[1]), "changed")  # already exported: must come again
    sim.add_comment(int(tickets[4]), customer, "more detail")  # not yet exported: once only
    tickets.append(str(sim.create_ticket(customer, "a new question")))
    rest, _ = walk(adapter, first.cursor)

    seen = Counter(ids([first, *rest]))
    assert set(seen) == set(tickets)
    assert seen[tickets[1]] == 2
    assert all(count == 1 for ticket, count in seen.items() if ticket != tickets[1])
    assert all(len(page.tickets) <= 3 for page in rest)
    assert "start_time" in query(urls[0]) and "cursor" not in query(urls[0])
    assert all("cursor" in query(u) and "start_time" not in query(u) for u in urls[1:])


def test_export_leaves_the_newest_changes_for_a_later_poll(make_adapter: MakeAdapter) -> None:
    with ZendeskSimulator(exclude_newest=1) as sim:
        customer = sim.add_user("Carla", "end-user")
        ticket = str(sim.create_ticket(customer, "just now"))
        adapter = make_adapter(sim)
        first = adapter.poll_changes(None, LONG_AGO)
        assert first.tickets == [] and not first.more
        time.sleep(1.1)
        later = adapter.poll_changes(first.cursor, LONG_AGO)
        assert [t.external_id for t in later.tickets] == [ticket]


@pytest.mark.parametrize("ahead", [timedelta(0), timedelta(hours=2)], ids=["now", "future"])
def test_first_poll_never_asks_for_a_start_time_zendesk_refuses(
    make_adapter: MakeAdapter, ahead: timedelta
) -> None:
    with ZendeskSimulator() as sim:  # Zendesk's own one-minute exclusion
        now = int(time.time())
        for refused in (str(now), str(now + 3600), "yesterday"):
            answer = requests.get(
                f"{sim.url}/api/v2/incremental/tickets/cursor.json",
                params={"start_time": refused}, headers={"Authorization": "Bearer zd-oauth"},
                timeout=5,
            )
            assert answer.status_code == 400
        adapter = make_adapter(sim)
        urls = export_urls(sim)
        page = adapter.poll_changes(None, datetime.now(UTC) + ahead)
        assert page.cursor and not page.more
        assert int(query(urls[0])["start_time"][0]) <= now - 60


def test_filters_keep_matching_tickets_and_the_cursor_still_advances(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    wanted = sim.create_ticket(customer, "yes", group_id=1, brand_id=10, tags=["vip", "eu"])
    sim.create_ticket(customer, "wrong group", group_id=2, brand_id=10, tags=["vip"])
    sim.create_ticket(customer, "wrong brand", group_id=1, brand_id=20, tags=["vip"])
    sim.create_ticket(customer, "no tag", group_id=1, brand_id=10, tags=["eu"])
    adapter = make_adapter(sim, group_ids=[1], brand_ids=[10], tags=["vip", "gold"])

    pages, cursor = walk(adapter, None)
    assert ids(pages) == [str(wanted)]
    assert adapter.poll_changes(cursor, LONG_AGO).tickets == []
    sim.add_tags(wanted, "followup")
    assert ids([adapter.poll_changes(cursor, LONG_AGO)]) == [str(wanted)]


def test_ticket_fields_are_normalised(sim: ZendeskSimulator, make_adapter: MakeAdapter) -> None:
    customer = sim.add_user("Carla", "end-user", email="carla@example.com")
    number = sim.create_ticket(customer, "hi", subject="Late order", tags=["vip"],
                               via_channel="web")
    ticket = make_adapter(sim).get_ticket(str(number))
    assert (ticket.subject, ticket.requester_id, ticket.requester_email, ticket.channel) == (
        "Late order", str(customer), "carla@example.com", "web",
    )
    assert ticket.tags == {"vip"} and ticket.status == "new" and not ticket.resolved
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo == UTC
    assert abs(ticket.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert ticket.url == f"{sim.url}/agent/tickets/{number}"


def test_malformed_export_items_are_skipped_and_the_rest_kept(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    customer = sim.add_user("Carla", "end-user")
    good = [sim.create_ticket(customer, "fine"), sim.create_ticket(customer, "also fine")]
    broken = {**sim.ticket_json(good[0]), "subject": "secret customer words"}
    del broken["id"]
    sim.add_fault(Fault(endpoint="incremental_tickets", status=200, body={
        "tickets": [sim.ticket_json(good[0]), broken, "not a ticket", sim.ticket_json(good[1])],
        "after_cursor": "next-please", "end_of_stream": True,
    }))
    adapter = make_adapter(sim)
    caplog.clear()  # the API token's retirement warning
    with caplog.at_level(logging.WARNING, logger="adapters.zendesk"):
        page = adapter.poll_changes(None, LONG_AGO)
    assert ids([page]) == [str(good[0]), str(good[1])]
    assert page.cursor == "next-please"
    assert len(caplog.records) == 2 and "secret customer words" not in caplog.text


def test_export_side_loads_comment_counts_of_every_comment_or_public_ones_only(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    agent = sim.add_user("Al", "agent", email="al@example.com")
    number = sim.create_ticket(customer, "hi")
    sim.add_comment(number, agent, "Internal: check the stock.", public=False)
    adapter = make_adapter(sim)
    urls = export_urls(sim)
    assert [t.message_count for t in adapter.poll_changes(None, LONG_AGO).tickets] == [2]
    assert query(urls[0])["include"] == ["users,comment_count"]
    sim.comment_count_public_only = True
    assert [t.message_count for t in adapter.poll_changes(None, LONG_AGO).tickets] == [1]
    assert adapter.get_ticket(str(number)).message_count is None  # only the export has it


def test_comment_counts_that_are_not_counts_are_unknown(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    values: list[Any] = [0, 3, -1, "3", True, 2.5, None]
    numbers = [sim.create_ticket(customer, "hi") for _ in range(len(values) + 1)]
    items = [{**sim.ticket_json(n), "comment_count": v}
             for n, v in zip(numbers[:-1], values, strict=True)]
    sim.add_fault(Fault(endpoint="incremental_tickets", status=200, body={
        "tickets": [*items, sim.ticket_json(numbers[-1])], "end_of_stream": True,
    }))
    page = make_adapter(sim).poll_changes(None, LONG_AGO)
    assert [t.message_count for t in page.tickets] == [0, 3, None, None, None, None, None, None]


def test_a_page_without_after_cursor_keeps_the_position(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    ticket = str(sim.create_ticket(customer, "hello"))
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="incremental_tickets", status=200,
                        body={"tickets": [], "end_of_stream": False}))
    empty = adapter.poll_changes(None, LONG_AGO)
    assert empty.tickets == [] and not empty.more  # no progress: no hot loop
    first = adapter.poll_changes(empty.cursor, LONG_AGO)  # still the first export, from the start
    assert ids([first]) == [ticket]
    sim.add_fault(Fault(endpoint="incremental_tickets", status=200,
                        body={"tickets": [], "end_of_stream": True}))
    assert adapter.poll_changes(first.cursor, LONG_AGO).cursor == first.cursor


# ----- resolved ----------------------------------------------------------------------------------
def test_resolved_by_status_custom_status_category_and_deletion(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    survey = sim.add_custom_status("Awaiting survey", "solved")
    vendor = sim.add_custom_status("Waiting on vendor", "hold")
    solved, closed, custom, held, deleted = (
        sim.create_ticket(customer, f"q{n}") for n in range(5)
    )
    sim.set_status(solved, "solved")
    sim.set_status(closed, "closed")
    sim.set_status(custom, "open", custom_status_id=survey)  # only the category says solved
    sim.set_status(held, "hold", custom_status_id=vendor)
    sim.delete_ticket(deleted)
    adapter = make_adapter(sim)

    pages, _ = walk(adapter, None)
    resolved = {t.external_id: t.resolved for page in pages for t in page.tickets}
    assert resolved == {
        str(solved): True, str(closed): True, str(custom): True, str(held): False,
        str(deleted): True,
    }
    assert adapter.get_ticket(str(custom)).resolved
    assert sim.call_count("custom_statuses") == 1
    with pytest.raises(NotFound):
        adapter.get_ticket(str(deleted))


@pytest.mark.parametrize("refusal", [403, 404])
def test_accounts_without_custom_statuses_still_work(
    make_adapter: MakeAdapter, refusal: int
) -> None:
    with ZendeskSimulator(exclude_newest=0, custom_statuses=refusal == 404) as sim:
        if refusal == 404:
            sim.add_fault(Fault(endpoint="custom_statuses", status=404))
        customer = sim.add_user("Carla", "end-user")
        open_ticket, solved = sim.create_ticket(customer, "a"), sim.create_ticket(customer, "b")
        sim.set_status(open_ticket, "open")
        sim.set_status(solved, "solved")
        adapter = make_adapter(sim)
        assert not adapter.get_ticket(str(open_ticket)).resolved
        assert adapter.get_ticket(str(solved)).resolved


def test_unknown_ticket_ids_are_not_found(sim: ZendeskSimulator, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sim)
    for ticket_id in ("999", "../users/me", "12.json"):
        with pytest.raises(NotFound):
            adapter.get_ticket(ticket_id)
    assert sim.call_count("ticket_show") == 1


# ----- messages ----------------------------------------------------------------------------------
def test_roles_visibility_and_order(sim: ZendeskSimulator, make_adapter: MakeAdapter) -> None:
    customer = sim.add_user("Carla", "end-user")
    agent = sim.add_user("Alex", "agent")
    admin = sim.add_user("Ada", "admin")
    number = sim.create_ticket(customer, "My parcel is late")
    sim.add_comment(number, agent, "Checking with the courier", public=False)
    sim.add_comment(number, admin, "It ships tomorrow")
    sim.add_comment(number, agent, "Thanks for contacting us", via_channel="rule")
    sim.add_comment(number, agent, "Reminder", via_channel="api", via_rel="automation")
    sim.add_comment(number, customer, "Thank you!")
    former = sim.add_user("Former agent", "agent")
    sim.add_comment(number, former, "Old note", public=False)
    sim.delete_user(former)
    sim.delete_user(customer)  # the requester's words stay the customer's
    adapter = make_adapter(sim, page_size=3)  # comments come in pages of three

    ticket = adapter.get_ticket(str(number))
    messages = adapter.list_messages(ticket)
    assert [(m.role, m.public, m.body) for m in messages] == [
        (Role.CUSTOMER, True, "My parcel is late"),
        (Role.AGENT, False, "Checking with the courier"),
        (Role.AGENT, True, "It ships tomorrow"),
        (Role.SYSTEM, True, "Thanks for contacting us"),
        (Role.SYSTEM, True, "Reminder"),
        (Role.CUSTOMER, True, "Thank you!"),
        (Role.AGENT, False, "Old note"),
    ]
    assert [m.external_id for m in messages] == [str(c["id"]) for c in sim.comments(number)]
    assert all(m.ticket_id == str(number) for m in messages)
    assert sim.call_count("ticket_comments") == 3


def test_html_only_comment_becomes_clean_text(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "hello")
    sim.add_comment(number, customer, (
        '<div dir="auto"><p>Hi <b>team</b> &amp; thanks</p><ol><li>Order&nbsp;#42</li>'
        '</ol><p>See <a href="https://shop.example/o/42">my order</a><br>Carla</p>'
        '<img src="cid:logo"></div>'
    ), html=True)
    assert "plain_body" not in sim.comments(number)[-1]
    adapter = make_adapter(sim)
    body = adapter.list_messages(adapter.get_ticket(str(number)))[-1].body
    assert body == (
        "Hi team & thanks\n\n  1. Order #42\n\nSee [my order](https://shop.example/o/42)\nCarla"
    )


def test_comment_pages_follow_links_next_when_meta_has_no_cursor(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "one")
    sim.add_comment(number, customer, "two")
    first = requests.get(
        f"{sim.url}/api/v2/tickets/{number}/comments.json", params={"page[size]": 1},
        headers={"Authorization": "Bearer zd-oauth"}, timeout=5,
    ).json()
    del first["meta"]["after_cursor"]
    sim.add_fault(Fault(endpoint="ticket_comments", status=200, body=first))
    adapter = make_adapter(sim, page_size=1)
    messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert [m.body for m in messages] == ["one", "two"]


def test_comment_pages_that_never_end_are_refused(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    sim.add_fault(Fault(endpoint="ticket_comments", status=200, times=None, body={
        "comments": [], "meta": {"has_more": True, "after_cursor": "same"},
    }))
    adapter = make_adapter(sim)
    ticket = adapter.get_ticket(str(number))
    with pytest.raises(MalformedResponse, match="repeats"):
        adapter.list_messages(ticket)


# ----- posting -----------------------------------------------------------------------------------
def test_post_draft_adds_a_private_note_by_the_bot(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "Where is my parcel?")
    adapter = make_adapter(sim)

    posted = adapter.post_draft(str(number), "It ships tomorrow.\n\n-- AI draft")

    note = sim.comments(number)[-1]
    assert (posted.external_id, posted.kind) == (str(note["id"]), "note")
    assert note["public"] is False and note["author_id"] == sim.bot_user_id
    assert sim.notes_by(sim.bot_user_id) == [{**note, "ticket_id": number}]
    last = adapter.list_messages(adapter.get_ticket(str(number)))[-1]
    assert (last.external_id, last.role, last.public) == (posted.external_id, Role.AGENT, False)
    assert last.body == "It ships tomorrow.\n\n-- AI draft"
    assert adapter.find_posted(adapter.get_ticket(str(number)), "-- AI draft") == last.external_id


def test_simulator_makes_comments_public_unless_told_otherwise(sim: ZendeskSimulator) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    answer = requests.put(
        f"{sim.url}/api/v2/tickets/{number}.json", json={"ticket": {"comment": {"body": "hi"}}},
        headers={"Authorization": "Bearer zd-oauth"}, timeout=5,
    )
    assert answer.status_code == 200 and sim.comments(number)[-1]["public"] is True


def test_post_draft_falls_back_to_the_audit_id(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    sim.add_fault(Fault(endpoint="ticket_update", status=200, body={
        "ticket": sim.ticket_json(number), "audit": {"id": 4242, "events": []},
    }))
    assert make_adapter(sim).post_draft(str(number), "note").external_id == "audit:4242"


def test_post_draft_is_not_repeated_after_a_server_error_but_is_after_429(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="ticket_update", status=503))
    with pytest.raises(ServerError):
        adapter.post_draft(str(number), "first try")
    assert sim.call_count("ticket_update") == 1

    sim.add_fault(Fault(endpoint="ticket_update", status=429, retry_after=0))
    adapter.post_draft(str(number), "second try")
    assert sim.call_count("ticket_update") == 3
    assert [n["body"] for n in sim.notes_by(sim.bot_user_id)] == ["second try"]


# ----- rate limits -------------------------------------------------------------------------------
def test_retry_after_is_honoured(sim: ZendeskSimulator, make_adapter: MakeAdapter) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    sim.add_fault(Fault(endpoint="ticket_show", status=429, retry_after=1))
    make_adapter(sim).get_ticket(str(number))
    refused, served = [c for c in sim.calls if c.endpoint == "ticket_show"]
    assert (refused.status, served.status) == (429, 200)
    assert served.at - refused.at >= 0.99


def test_per_minute_limit_reports_headers_and_parks_long_waits(make_adapter: MakeAdapter) -> None:
    with ZendeskSimulator(exclude_newest=0, rate_limit=3) as sim:
        number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
        sim.set_status(number, "solved")  # resolved by status: no custom-status lookup to count
        remaining = []
        for _ in range(2):
            answer = requests.get(f"{sim.url}/api/v2/users/me.json",
                                  headers={"Authorization": "Bearer zd-oauth"}, timeout=5)
            assert answer.headers["X-Rate-Limit"] == "3"
            remaining.append(answer.headers["X-Rate-Limit-Remaining"])
        assert remaining == ["2", "1"]
        adapter = make_adapter(sim)
        adapter.get_ticket(str(number))
        with pytest.raises(RateLimited) as limited:
            adapter.get_ticket(str(number))
        assert limited.value.retry_after is not None and limited.value.retry_after > 50


# ----- secrets -----------------------------------------------------------------------------------
def test_secrets_never_reach_the_logs(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    number = sim.create_ticket(sim.add_user("Carla", "end-user"), "hello")
    basic = base64.b64encode(b"bot@example.com/token:zd-token").decode()
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for auth in (TOKEN_AUTH, BEARER_AUTH):
            adapter = make_adapter(sim, auth=auth)
            adapter.check()
            walk(adapter, None)
            adapter.list_messages(adapter.get_ticket(str(number)))
            adapter.post_draft(str(number), "note")
        sim.add_fault(Fault(endpoint="ticket_show", status=503, times=1))
        make_adapter(sim).get_ticket(str(number))  # a retry is logged
        for wrong in ({"email": "bot@example.com", "api_token": "wrong-token"},
                      {"access_token": "wrong-oauth"}):
            with pytest.raises(AuthenticationFailed) as failure:
                make_adapter(sim, auth=wrong).check()
            errors.append(str(failure.value))
    text = caplog.text + "\n".join(errors)
    assert "retry" in caplog.text and "ticket_show" in caplog.text  # logging did happen
    for secret in ("zd-token", "zd-oauth", basic, "wrong-token", "wrong-oauth"):
        assert secret not in text


# ----- drafts as the agent must see them ---------------------------------------------------------
THREE_PARAGRAPHS = (
    "Hello Carla,\n\nYour order {{ticket.id}} ships today.\nTracking follows.\n\n"
    "Best regards\n\n— AI draft, Uppzy ref req-1"
)


def test_draft_keeps_paragraphs_and_placeholders_literal(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "where is my order?")
    posted = make_adapter(sim).post_draft(str(number), THREE_PARAGRAPHS)

    note = sim.comments(number)[-1]
    assert note["id"] == int(posted.external_id) and note["public"] is False
    assert sim.placeholders_rendered == 0
    assert note["html_body"].count("<p>") == 4  # three paragraphs and the marker's
    assert "{{" not in note["html_body"]  # nothing left for the placeholder engine
    assert note["plain_body"] == THREE_PARAGRAPHS  # what the agent reads: the answer as written


def test_simulator_renders_placeholders_in_api_comments(sim: ZendeskSimulator) -> None:
    """Fact (unverified, assumed the worst): ``{{...}}`` in an API comment is rendered."""
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "hi")
    answer = requests.put(
        f"{sim.url}/api/v2/tickets/{number}.json", timeout=5,
        headers={"Authorization": "Bearer zd-oauth"},
        json={"ticket": {"comment": {"body": "Ticket {{ticket.id}}{{unknown}}", "public": False}}},
    )
    assert answer.status_code == 200
    assert sim.comments(number)[-1]["body"] == f"Ticket {number}"


# ----- the export's own limit and support types --------------------------------------------------
def test_export_429_does_not_hold_back_posts_and_reads(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    number = sim.create_ticket(customer, "question")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="incremental_tickets", status=429, retry_after=30, times=None))
    with pytest.raises(RateLimited) as limited:
        adapter.poll_changes(None, LONG_AGO)
    assert limited.value.retry_after is not None and limited.value.retry_after >= 25
    ticket = adapter.get_ticket(str(number))
    assert adapter.list_messages(ticket)
    for n in range(20):
        adapter.post_draft(str(number), f"answer {n}")
    assert sim.call_count("ticket_update") == 20
    assert sim.call_count("incremental_tickets") == 1  # the export waits its Retry-After
    with pytest.raises(RateLimited):
        adapter.poll_changes(None, LONG_AGO)
    assert sim.call_count("incremental_tickets") == 1


def test_simulator_limits_the_export_to_ten_requests_a_minute(make_adapter: MakeAdapter) -> None:
    """Fact: the incremental exports allow 10 requests a minute, apart from other endpoints."""
    with ZendeskSimulator(exclude_newest=0, export_rate_limit=10) as sim:
        customer = sim.add_user("Carla", "end-user")
        number = sim.create_ticket(customer, "question")
        statuses = [
            requests.get(f"{sim.url}/api/v2/incremental/tickets/cursor.json", timeout=5,
                         params={"start_time": 0}, headers={"Authorization": "Bearer zd-oauth"})
            for _ in range(11)
        ]
        assert [r.status_code for r in statuses] == [200] * 10 + [429]
        assert 0 < int(statuses[-1].headers["Retry-After"]) <= 60
        shown = requests.get(f"{sim.url}/api/v2/tickets/{number}.json", timeout=5,
                             headers={"Authorization": "Bearer zd-oauth"})
        assert shown.status_code == 200


def test_export_lists_tickets_ai_agents_handle(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_user("Carla", "end-user")
    people = str(sim.create_ticket(customer, "for a person"))
    machine = sim.create_ticket(customer, "for the AI agent")
    sim.set_support_type(machine, "ai_agent")
    urls = export_urls(sim)
    pages, _ = walk(make_adapter(sim), None)
    assert sorted(ids(pages)) == sorted([people, str(machine)])
    assert all(query(u)["support_type_scope"] == ["all"] for u in urls)


def test_simulator_export_leaves_ai_agent_tickets_out_by_default(sim: ZendeskSimulator) -> None:
    """Fact: ``support_type_scope`` defaults to ``agent``."""
    customer = sim.add_user("Carla", "end-user")
    sim.set_support_type(sim.create_ticket(customer, "for the AI agent"), "ai_agent")
    answer = requests.get(f"{sim.url}/api/v2/incremental/tickets/cursor.json", timeout=5,
                          params={"start_time": 0}, headers={"Authorization": "Bearer zd-oauth"})
    assert answer.json()["tickets"] == []
