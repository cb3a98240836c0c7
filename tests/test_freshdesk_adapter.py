"""The Freshdesk adapter against the Freshdesk simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pydantic import ValidationError
from support import SeenCalls

from adapters.base import ChangePage, Role
from adapters.freshdesk import FreshdeskAdapter, FreshdeskSettings
from adapters.freshdesk import adapter as freshdesk_module
from adapters.freshdesk import positions as freshdesk_positions
from adapters.freshdesk.simulator import FreshdeskSimulator
from adapters.registry import adapter_class
from adapters.simulation import Fault
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
)

API_KEY = "fd-api-key"
AUTH = {"api_key": API_KEY}
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)  # before every frozen clock in these tests
PAST = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # a settled second: no change can land in it now
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:X".encode()).decode()

MakeAdapter = Callable[..., FreshdeskAdapter]


@pytest.fixture
def sim() -> Iterator[FreshdeskSimulator]:
    simulator = FreshdeskSimulator()
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[FreshdeskAdapter] = []

    def make(simulator: FreshdeskSimulator, **overrides: Any) -> FreshdeskAdapter:
        config: dict[str, Any] = {
            "name": "fd", "type": "freshdesk", "url": simulator.url, "auth": AUTH,
        }
        adapter = FreshdeskAdapter(FreshdeskSettings(**{**config, **overrides}))
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


def list_queries(sim: FreshdeskSimulator, view: str | None = None
                 ) -> SeenCalls[dict[str, list[str]]]:
    """The query of every ticket-list request the adapter really sent for ``view`` (None: the
    plain list; "deleted"/"spam": the sweep), as the simulator received it."""
    return SeenCalls(
        sim, lambda call: call.path == "/api/v2/tickets"
        and call.query.get("filter", [None])[0] == view,
        lambda call: call.query,
    )


def walk(adapter: FreshdeskAdapter, cursor: str | None) -> tuple[list[ChangePage], str]:
    """Poll until the feed says there is nothing more right now (bounded)."""
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        assert len(pages) < 50, "the feed never ends"
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


def api_get(sim: FreshdeskSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}{path}", params=params, headers={"Authorization": BASIC},
                        timeout=5)


# ----- settings ----------------------------------------------------------------------------------
def test_settings_errors_name_the_key_and_hide_secrets() -> None:
    base = {"name": "fd", "type": "freshdesk", "url": "https://acme.freshdesk.com/api/v2/"}
    with pytest.raises(ValidationError) as missing:
        FreshdeskSettings(**base, auth={})
    assert "auth.api_key" in str(missing.value)
    with pytest.raises(ValidationError) as extra:
        FreshdeskSettings(**base, auth=AUTH, colour="blue")
    assert "colour" in str(extra.value)
    with pytest.raises(ValidationError) as size:
        FreshdeskSettings(**base, auth=AUTH, page_size=101)
    assert "page_size" in str(size.value)

    settings = FreshdeskSettings(**base, auth=AUTH)
    assert settings.url == "https://acme.freshdesk.com"
    assert API_KEY not in repr(settings)


def test_adapter_is_found_through_its_entry_point() -> None:
    assert adapter_class("freshdesk") is FreshdeskAdapter
    assert FreshdeskAdapter.capabilities.drafts is False
    assert FreshdeskAdapter.capabilities.webhook == "shared-secret-header"


# ----- check -------------------------------------------------------------------------------------
def test_check_names_the_bot_agent(sim: FreshdeskSimulator, make_adapter: MakeAdapter) -> None:
    description = make_adapter(sim).check()
    assert description == f"agent {sim.bot_agent_id} (Uppzy Bot; ticket scope global)"
    sent = sim.calls[-1]
    assert (sent.endpoint, sent.status) == ("agents_me", 200)


def test_check_rejects_a_wrong_key(sim: FreshdeskSimulator, make_adapter: MakeAdapter) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        make_adapter(sim, auth={"api_key": "wrong"}).check()
    assert failure.value.status == 401
    assert "logged in" in str(failure.value)


# ----- change feed -------------------------------------------------------------------------------
def test_first_poll_sends_updated_since_so_old_tickets_are_not_missed(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    old = datetime.now(UTC) - timedelta(days=45)
    ticket = str(sim.create_ticket(customer, "still waiting", created_at=old))
    # Freshdesk's default window: without updated_since the ticket is invisible.
    assert api_get(sim, "/api/v2/tickets").json() == []

    adapter = make_adapter(sim)
    queries = list_queries(sim)
    page = adapter.poll_changes(None, old - timedelta(days=1))
    assert ids([page]) == [ticket]
    assert queries[0]["updated_since"] == [(old - timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")]
    assert (queries[0]["order_by"], queries[0]["order_type"]) == (["updated_at"], ["asc"])


def test_walk_re_anchors_and_misses_nothing_when_tickets_move_mid_walk(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    tickets = []
    for n in range(7):  # one ticket per second: every page moves the anchor
        sim.freeze_time(start + timedelta(seconds=n))
        tickets.append(str(sim.create_ticket(customer, f"question {n}")))
    adapter = make_adapter(sim, page_size=3)
    queries = list_queries(sim)

    first = adapter.poll_changes(None, start - timedelta(minutes=1))
    assert ids([first]) == tickets[:3] and first.more
    sim.freeze_time(start + timedelta(seconds=30))
    # Already reported and updated again: it moves to the end of the list. An offset walk
    # would now skip the ticket that slid onto page one; a fresh query from the anchor cannot.
    sim.add_tags(int(tickets[0]), "changed")
    rest, cursor = walk(adapter, first.cursor)

    seen = Counter(ids([first, *rest]))
    assert set(seen) == set(tickets)
    assert seen[tickets[0]] == 2
    assert all(count == 1 for ticket, count in seen.items() if ticket != tickets[0])
    assert all(q["page"] == ["1"] for q in queries)
    anchors = [q["updated_since"][0] for q in queries]
    assert anchors == sorted(anchors) and len(set(anchors)) == len(anchors)
    assert adapter.poll_changes(cursor, LONG_AGO).tickets == []


def test_a_run_of_tickets_in_one_second_is_walked_by_page_without_repeats(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    moment = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    sim.freeze_time(moment - timedelta(seconds=1))
    earlier = str(sim.create_ticket(customer, "before"))
    sim.freeze_time(moment)
    burst = [str(sim.create_ticket(customer, f"bulk import {n}")) for n in range(5)]
    adapter = make_adapter(sim, page_size=2)
    queries = list_queries(sim)

    pages, cursor = walk(adapter, None)
    assert ids(pages) == [earlier, *burst]
    assert [q["page"][0] for q in queries][-3:] == ["1", "2", "3"]
    assert adapter.poll_changes(cursor, LONG_AGO).tickets == []

    sim.freeze_time(moment)  # same second again: a late change must still be found
    late = str(sim.create_ticket(customer, "same second, later"))
    sim.freeze_time(moment + timedelta(seconds=5))
    sim.customer_reply(int(burst[1]), "any news?")
    pages, _ = walk(adapter, cursor)
    assert sorted(ids(pages)) == sorted([late, burst[1]])


def test_tickets_of_a_young_second_are_reported_again_until_it_has_settled(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    sim.freeze_time(datetime.now(UTC))  # every change below lands in this very second
    ticket = str(sim.create_ticket(customer, "hello"))
    adapter = make_adapter(sim)
    first, cursor = walk(adapter, None)
    assert ids(first) == [ticket]
    sim.customer_reply(int(ticket), "one more thing")  # updated_at does not move
    assert sim.ticket_json(int(ticket))["updated_at"] == first[0].tickets[0].updated_at.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    again, _ = walk(adapter, cursor)
    assert ids(again) == [ticket]


def test_a_young_run_of_pages_is_walked_again_from_its_first_page(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    sim.freeze_time(datetime.now(UTC))
    burst = [str(sim.create_ticket(customer, f"bulk import {n}")) for n in range(5)]
    adapter = make_adapter(sim, page_size=2)
    pages, cursor = walk(adapter, None)
    assert set(ids(pages)) == set(burst)  # young tickets may come twice; never zero times
    sim.customer_reply(int(burst[0]), "changed on a page already read, in the same second")
    again, _ = walk(adapter, cursor)
    assert burst[0] in ids(again)


def test_page_depth_cap_is_never_exceeded(
    make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(freshdesk_positions, "MAX_PAGE", 2)
    with FreshdeskSimulator(max_page=2) as sim:
        customer = sim.add_contact("Carla")
        moment = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        sim.freeze_time(moment)
        burst = [str(sim.create_ticket(customer, f"q{n}")) for n in range(5)]
        assert api_get(sim, "/api/v2/tickets", updated_since="2024-01-01T00:00:00Z",
                       per_page=2, page=3).status_code == 400
        sim.freeze_time(moment + timedelta(seconds=1))
        after = str(sim.create_ticket(customer, "next second"))
        adapter = make_adapter(sim, page_size=2)
        before = len(sim.calls)
        with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
            pages, _ = walk(adapter, None)
        assert ids(pages) == [*burst[:4], after]
        assert "pages of tickets updated at 2024-03-01T09:00:00Z" in caplog.text
        assert all(call.status == 200 for call in sim.calls[before:])


def test_spam_and_deleted_tickets_are_reported_once_by_the_sweep_as_resolved(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    sim.freeze_time(PAST)
    spam, trashed, purged, kept = (sim.create_ticket(customer, f"q{n}") for n in range(4))
    assert [t["id"] for t in api_get(sim, "/api/v2/tickets", updated_since="2024-01-01").json()
            ] == [kept, purged, trashed, spam]
    sim.freeze_time(PAST + timedelta(seconds=1))
    sim.mark_spam(spam)
    sim.delete_ticket(trashed)
    sim.purge_ticket(purged)
    assert [t["id"] for t in api_get(sim, "/api/v2/tickets", updated_since="2024-01-01").json()
            ] == [kept]  # the plain list leaves spam and trash out
    adapter = make_adapter(sim, removed_check_interval="1h")
    views = [list_queries(sim, view) for view in ("deleted", "spam")]

    pages, cursor = walk(adapter, None)
    state = {t.external_id: t.resolved for page in pages for t in page.tickets}
    assert state == {str(kept): False, str(trashed): True, str(spam): True}
    assert [len(queries) for queries in views] == [1, 1]
    assert views[0][0]["updated_since"] == [LONG_AGO.strftime("%Y-%m-%dT%H:%M:%SZ")]
    again, _ = walk(adapter, cursor)  # the next round is an hour away
    assert ids(again) == [] and [len(queries) for queries in views] == [1, 1]
    assert adapter.get_ticket(str(spam)).resolved
    assert adapter.get_ticket(str(trashed)).resolved
    assert not adapter.get_ticket(str(kept)).resolved
    with pytest.raises(NotFound):
        adapter.get_ticket(str(purged))


def test_a_ticket_deleted_later_is_found_by_the_next_sweep_round(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    ticket = sim.create_ticket(customer, "hello")
    adapter = make_adapter(sim, removed_check_interval=0)
    pages, cursor = walk(adapter, None)
    assert [(t.external_id, t.resolved) for p in pages for t in p.tickets] == [
        (str(ticket), False)]
    sim.delete_ticket(ticket)
    pages, _ = walk(adapter, cursor)
    assert [(t.external_id, t.resolved) for p in pages for t in p.tickets] == [
        (str(ticket), True)]


@pytest.mark.parametrize("mode", ["ignored", "refused"])
def test_the_sweep_is_right_when_the_removed_views_ignore_updated_since_and_order(
    make_adapter: MakeAdapter, mode: str,
) -> None:
    """Freshdesk does not document whether ``filter=deleted|spam`` honours ``updated_since``
    and ``order_by``. When it ignores them, the view comes newest-created first and whole: the
    tickets removed since the last round may sit on any page, among tickets removed long ago."""
    sim = FreshdeskSimulator(removed_views=mode)
    sim.start()
    try:
        customer = sim.add_contact("Carla")
        sim.freeze_time(PAST)
        tickets = [sim.create_ticket(customer, f"q{n}") for n in range(6)]
        sim.freeze_time(PAST + timedelta(seconds=1))
        sim.delete_ticket(tickets[4])  # removed before the connector's first poll
        sim.mark_spam(tickets[5])
        sim.freeze_time(PAST + timedelta(minutes=10))
        for ticket in tickets[:4]:  # the oldest tickets: the last pages of the view
            sim.delete_ticket(ticket)
        sim.freeze_time(None)
        adapter = make_adapter(sim, page_size=2, removed_check_interval="1h")

        pages, _ = walk(adapter, adapter.poll_changes(None, PAST + timedelta(minutes=5)).cursor)
        removed = {t.external_id for page in pages for t in page.tickets if t.resolved}
        assert removed == {str(t) for t in tickets[:4]}
    finally:
        sim.stop()


def test_a_cursor_written_before_the_sweep_kept_its_page_is_still_read(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    """A daemon upgraded mid-round keeps its place instead of starting from ``start_from``."""
    customer = sim.add_contact("Carla")
    sim.freeze_time(PAST)
    ticket = sim.create_ticket(customer, "hello")
    sim.freeze_time(None)
    older = ('{"v":2,"since":"2024-03-01T08:00:00Z","page":1,"newest":"2024-03-01T08:00:00Z",'
             '"seen":[],"swept":"2024-03-01T08:00:00Z","removed":{"deleted":'
             '"2024-03-01T08:00:00Z","spam":"2024-03-01T08:00:00Z"},"sweep":[]}')
    queries = list_queries(sim)
    pages, _ = walk(make_adapter(sim), older)
    assert ids(pages) == [str(ticket)]
    assert queries[0]["updated_since"] == ["2024-03-01T08:00:00Z"]  # not start_from


def test_backfill_lists_a_window_without_touching_the_live_cursor(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    made = []
    for offset in (0, 10, 11, 20, 30):
        sim.freeze_time(PAST + timedelta(seconds=offset))
        made.append(str(sim.create_ticket(customer, f"asked at +{offset}s")))
    adapter = make_adapter(sim, page_size=1)
    listing = adapter.list_tickets(PAST + timedelta(seconds=5), PAST + timedelta(seconds=25))
    assert [t.external_id for page in listing for t in page] == made[1:4]
    # One page per ticket plus one re-read of each anchor's second (skipped as seen); the
    # listing stops at the first ticket past the window instead of reading on.
    assert sim.call_count("tickets_list") == 7
    assert ids(walk(adapter, None)[0]) == made  # the live feed starts where it always does


def test_filters_keep_matching_tickets_and_the_cursor_still_advances(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    sim.freeze_time(PAST)
    wanted = sim.create_ticket(customer, "yes", group_id=1, product_id=10, tags=["vip", "eu"])
    sim.create_ticket(customer, "wrong group", group_id=2, product_id=10, tags=["vip"])
    sim.create_ticket(customer, "wrong product", group_id=1, product_id=20, tags=["vip"])
    sim.create_ticket(customer, "no tag", group_id=1, product_id=10, tags=["eu"])
    adapter = make_adapter(sim, group_ids=[1], product_ids=[10], tags=["vip", "gold"])

    pages, cursor = walk(adapter, None)
    assert ids(pages) == [str(wanted)]
    assert adapter.poll_changes(cursor, LONG_AGO).tickets == []
    sim.freeze_time(PAST + timedelta(seconds=5))
    sim.add_tags(wanted, "followup")
    assert ids([adapter.poll_changes(cursor, LONG_AGO)]) == [str(wanted)]


def test_ticket_fields_are_normalised(sim: FreshdeskSimulator, make_adapter: MakeAdapter) -> None:
    customer = sim.add_contact("Carla", "carla@example.com")
    number = sim.create_ticket(customer, "hi", subject="Late order", tags=["vip"], source=2)
    ticket = make_adapter(sim).get_ticket(str(number))
    assert (ticket.subject, ticket.requester_id, ticket.channel, ticket.status) == (
        "Late order", str(customer), "portal", "Open",
    )
    assert ticket.tags == {"vip"} and not ticket.resolved
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo == UTC
    assert abs(ticket.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert ticket.url == f"{sim.url}/a/tickets/{number}"


def test_malformed_list_items_are_skipped_and_the_rest_kept(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    customer = sim.add_contact("Carla")
    sim.freeze_time(PAST)
    good = [sim.create_ticket(customer, "fine"), sim.create_ticket(customer, "also fine")]
    no_id = {**sim.ticket_json(good[0]), "subject": "secret customer words"}
    del no_id["id"]
    no_time = {**sim.ticket_json(good[1]), "id": 999, "updated_at": "soon"}
    sim.add_fault(Fault(endpoint="tickets_list", status=200, body=[
        sim.ticket_json(good[0]), no_id, "not a ticket", no_time, sim.ticket_json(good[1]),
    ]))
    adapter = make_adapter(sim)
    with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
        page = adapter.poll_changes(None, LONG_AGO)
    assert ids([page]) == [str(good[0]), str(good[1])]
    assert len(caplog.records) == 3 and "999" in caplog.text
    assert "secret customer words" not in caplog.text
    assert adapter.poll_changes(page.cursor, LONG_AGO).tickets == []


def test_a_list_that_is_not_a_list_is_malformed(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    sim.add_fault(Fault(endpoint="tickets_list", status=200, body={"tickets": []}))
    with pytest.raises(MalformedResponse):
        make_adapter(sim).poll_changes(None, LONG_AGO)


def test_an_unreadable_cursor_restarts_from_start_from(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    ticket = str(sim.create_ticket(sim.add_contact("Carla"), "hello"))
    page = make_adapter(sim).poll_changes("garbage|x", LONG_AGO)
    assert ids([page]) == [ticket]


# ----- statuses ----------------------------------------------------------------------------------
def test_resolved_by_status_and_by_configured_custom_status_names(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla")
    survey = sim.add_custom_status("Awaiting Survey")
    vendor = sim.add_custom_status("Waiting on Vendor")
    resolved, closed, custom, held, pending = (
        sim.create_ticket(customer, f"q{n}") for n in range(5)
    )
    sim.set_status(resolved, 4)
    sim.set_status(closed, 5)
    sim.set_status(custom, survey)
    sim.set_status(held, vendor)
    sim.set_status(pending, 3)
    adapter = make_adapter(sim, resolved_statuses=["awaiting survey"])

    pages, _ = walk(adapter, None)
    state = {t.external_id: (t.status, t.resolved) for page in pages for t in page.tickets}
    assert state == {
        str(resolved): ("Resolved", True), str(closed): ("Closed", True),
        str(custom): ("Awaiting Survey", True), str(held): ("Waiting on Vendor", False),
        str(pending): ("Pending", False),
    }
    assert adapter.get_ticket(str(custom)).resolved
    assert sim.call_count("ticket_fields") == 1


def test_standard_statuses_need_no_ticket_fields(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.set_status(number, 4)
    adapter = make_adapter(sim, resolved_statuses=["Awaiting Survey"])
    assert adapter.get_ticket(str(number)).resolved
    assert sim.call_count("ticket_fields") == 0


def test_a_status_created_later_is_learned(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = sim.add_contact("Carla")
    first = sim.create_ticket(customer, "a")
    sim.set_status(first, sim.add_custom_status("Waiting on Vendor"))
    adapter = make_adapter(sim, resolved_statuses=["Awaiting Survey"])
    assert not adapter.get_ticket(str(first)).resolved
    second = sim.create_ticket(customer, "b")
    sim.set_status(second, sim.add_custom_status("Awaiting Survey"))
    assert adapter.get_ticket(str(second)).status == "status 7"  # read again only when stale
    monkeypatch.setattr(freshdesk_module, "STATUS_REFRESH", 0.0)
    assert adapter.get_ticket(str(second)).resolved
    assert sim.call_count("ticket_fields") == 2


def test_without_access_to_ticket_fields_custom_statuses_stay_open(
    make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with FreshdeskSimulator(ticket_fields=False) as sim:
        number = sim.create_ticket(sim.add_contact("Carla"), "hello")
        sim.set_status(number, sim.add_custom_status("Awaiting Survey"))
        adapter = make_adapter(sim, resolved_statuses=["Awaiting Survey"])
        with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
            ticket = adapter.get_ticket(str(number))
        assert (ticket.status, ticket.resolved) == ("status 6", False)
        assert "cannot read ticket fields" in caplog.text


def test_a_configured_status_name_the_account_lacks_is_reported(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.set_status(number, sim.add_custom_status("Waiting on Vendor"))
    with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
        make_adapter(sim, resolved_statuses=["Awaitng Survey"]).get_ticket(str(number))
    assert "'Awaitng Survey'" in caplog.text


def test_unknown_ticket_ids_are_not_found(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim)
    for ticket_id in ("999", "../agents/me", "12.json"):
        with pytest.raises(NotFound):
            adapter.get_ticket(ticket_id)
    assert sim.call_count("ticket_view") == 1


# ----- messages ----------------------------------------------------------------------------------
def test_description_first_then_conversations_with_roles_and_visibility(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    customer = sim.add_contact("Carla", "carla@example.com")
    colleague = sim.add_contact("Colin", "colin@example.com")
    agent = sim.add_agent("Alex", "alex@example.com")
    survey_app = sim.add_agent("Survey App", "survey@example.com")
    number = sim.create_ticket(customer, "My parcel is late")
    sim.add_conversation(number, agent, "Checking with the courier", private=True)
    sim.add_conversation(number, agent, "It ships tomorrow")
    sim.add_conversation(number, survey_app, "How did we do?")
    sim.customer_reply(number, "Thank you!")
    sim.add_conversation(number, colleague, "Forwarded to me", private=True)  # third party
    sim.add_conversation(number, customer, "Via the portal", incoming=False)
    adapter = make_adapter(sim, page_size=2, system_user_ids=[survey_app])

    messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert [(m.role, m.public, m.body) for m in messages] == [
        (Role.CUSTOMER, True, "My parcel is late"),
        (Role.AGENT, False, "Checking with the courier"),
        (Role.AGENT, True, "It ships tomorrow"),
        (Role.SYSTEM, True, "How did we do?"),
        (Role.CUSTOMER, True, "Thank you!"),
        (Role.CUSTOMER, False, "Forwarded to me"),
        (Role.CUSTOMER, True, "Via the portal"),
    ]
    conversation_ids = [str(c["id"]) for c in sim.conversations(number)]
    assert [m.external_id for m in messages] == [f"desc:{number}", *conversation_ids]
    assert messages[0].author_id == str(customer)
    assert all(m.ticket_id == str(number) for m in messages)
    assert sim.call_count("ticket_conversations") == 3  # six entries in pages of two


def test_authors_are_told_apart_by_looking_them_up_as_agents(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    """``incoming`` and the requester id do not say who wrote an entry: a contact in CC writes
    in the portal (not incoming, not the requester) and an agent answers a notification by mail
    (incoming). Only the agent lookup tells them apart."""
    customer = sim.add_contact("Carla", "carla@example.com")
    cc_contact = sim.add_contact("Colin", "colin@example.com")
    agent = sim.add_agent("Alex", "alex@example.com")
    number = sim.create_ticket(customer, "My parcel is late")
    sim.add_conversation(number, cc_contact, "Any news on this?", incoming=False)
    sim.add_conversation(number, agent, "It ships tomorrow", incoming=True)
    sim.add_conversation(number, cc_contact, "Thanks!", incoming=False)
    adapter = make_adapter(sim)
    lookups = SeenCalls(sim, lambda call: call.endpoint == "agent_view",
                        lambda call: call.path)

    messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert [(m.role, m.public, m.body) for m in messages] == [
        (Role.CUSTOMER, True, "My parcel is late"),
        (Role.CUSTOMER, True, "Any news on this?"),
        (Role.AGENT, True, "It ships tomorrow"),
        (Role.CUSTOMER, True, "Thanks!"),
    ]
    assert sorted(lookups) == sorted(f"/api/v2/agents/{user}" for user in (cc_contact, agent))
    adapter.list_messages(adapter.get_ticket(str(number)))
    assert len(lookups) == 2  # cached: each author is looked up once


def test_without_the_right_to_view_agents_authors_are_guessed_and_a_warning_says_so(
    make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    sim = FreshdeskSimulator(agents_readable=False)
    sim.start()
    try:
        customer = sim.add_contact("Carla")
        agent = sim.add_agent("Alex", "alex@example.com")
        number = sim.create_ticket(customer, "Hello")
        sim.add_conversation(number, agent, "Hi there")
        sim.customer_reply(number, "Thanks")
        adapter = make_adapter(sim)
        with caplog.at_level(logging.WARNING):
            messages = adapter.list_messages(adapter.get_ticket(str(number)))
            adapter.list_messages(adapter.get_ticket(str(number)))
        assert [m.role for m in messages] == [Role.CUSTOMER, Role.AGENT, Role.CUSTOMER]
        assert caplog.text.count("cannot view agents") == 1
        assert sim.call_count("agent_view") == 1  # refused once, not asked again
    finally:
        sim.stop()


def test_simulator_agent_view_knows_agents_by_user_id_and_not_contacts(
    sim: FreshdeskSimulator,
) -> None:
    agent = sim.add_agent("Alex", "alex@example.com")
    contact = sim.add_contact("Carla")
    assert api_get(sim, f"/api/v2/agents/{agent}").json()["id"] == agent
    assert api_get(sim, f"/api/v2/agents/{contact}").status_code == 404


def test_an_outbound_ticket_starts_with_the_agents_words(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "Your order shipped", source=10)
    adapter = make_adapter(sim)
    first = adapter.list_messages(adapter.get_ticket(str(number)))[0]
    assert (first.external_id, first.role) == (f"desc:{number}", Role.AGENT)


def test_html_bodies_become_clean_text(sim: FreshdeskSimulator, make_adapter: MakeAdapter) -> None:
    customer = sim.add_contact("Carla")
    number = sim.create_ticket(customer, "<div>Hello <b>there</b></div>", html=True)
    sim.customer_reply(number, (
        '<div dir="auto"><p>Hi <b>team</b> &amp; thanks</p><ol><li>Order&nbsp;#42</li>'
        '</ol><p>See <a href="https://shop.example/o/42">my order</a><br>Carla</p>'
        '<img src="cid:logo"></div>'
    ), html=True)
    adapter = make_adapter(sim)
    messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert messages[0].body == "Hello there"
    assert messages[1].body == (
        "Hi team & thanks\n\n  1. Order #42\n\nSee [my order](https://shop.example/o/42)\nCarla"
    )


def test_malformed_conversations_are_skipped(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.customer_reply(number, "secret customer words")
    good = sim.conversations(number)[0]
    sim.add_fault(Fault(endpoint="ticket_conversations", status=200, body=[
        {**good, "id": None}, {**good, "created_at": None}, "junk", good,
    ]))
    adapter = make_adapter(sim)
    with caplog.at_level(logging.WARNING, logger="adapters.freshdesk"):
        messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert [m.external_id for m in messages] == [f"desc:{number}", str(good["id"])]
    assert len(caplog.records) == 3 and str(number) in caplog.text
    assert "secret customer words" not in caplog.text


def test_conversation_pages_that_never_end_are_refused(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.add_fault(Fault(endpoint="ticket_conversations", status=200, times=None, body=[]))
    adapter = make_adapter(sim)
    ticket = adapter.get_ticket(str(number))
    endless = FreshdeskSimulator.dispatch

    def with_next_link(self: FreshdeskSimulator, request: Any) -> Any:
        endpoint, response = endless(self, request)
        if endpoint == "ticket_conversations" and response is not None:
            response.headers["Link"] = f'<{self.url}/next>; rel="next"'
        return endpoint, response

    sim.dispatch = with_next_link.__get__(sim)  # type: ignore[method-assign]
    with pytest.raises(MalformedResponse, match="more than"):
        adapter.list_messages(ticket)
    assert sim.call_count("ticket_conversations") == freshdesk_module.MAX_CONVERSATION_PAGES


def test_a_customer_reply_reopens_a_resolved_ticket(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.set_status(number, 4)
    adapter = make_adapter(sim)
    assert adapter.get_ticket(str(number)).resolved
    sim.customer_reply(number, "it broke again")
    assert not adapter.get_ticket(str(number)).resolved


# ----- posting -----------------------------------------------------------------------------------
def test_post_draft_adds_a_private_note_by_the_bot(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "Where is my parcel?")
    adapter = make_adapter(sim)
    text = "Hi Carla,\nit ships <tomorrow> & arrives Friday.\n\n— AI draft, Uppzy ref r-1"

    posted = adapter.post_draft(str(number), text)

    note = sim.conversations(number)[-1]
    assert (posted.external_id, posted.kind) == (str(note["id"]), "note")
    assert note["private"] is True and note["user_id"] == sim.bot_agent_id
    assert note["body"] == ("<p>Hi Carla,<br>it ships &lt;tomorrow&gt; &amp; arrives Friday.</p>"
                            "<p>— AI draft, Uppzy ref r-1</p>")
    assert sim.notes_by(sim.bot_agent_id) == [note]
    ticket = adapter.get_ticket(str(number))
    last = adapter.list_messages(ticket)[-1]
    assert (last.external_id, last.role, last.public) == (posted.external_id, Role.AGENT, False)
    assert last.body == text
    assert adapter.find_posted(ticket, "AI draft, Uppzy ref r-1") == posted.external_id


def test_simulator_makes_notes_private_unless_told_otherwise(sim: FreshdeskSimulator) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    for payload, private in (({"body": "<p>hi</p>"}, True),
                             ({"body": "<p>hi</p>", "private": False}, False)):
        answer = requests.post(f"{sim.url}/api/v2/tickets/{number}/notes", json=payload,
                               headers={"Authorization": BASIC}, timeout=5)
        assert answer.status_code == 201 and answer.json()["private"] is private
    blank = requests.post(f"{sim.url}/api/v2/tickets/{number}/notes", json={"body": " "},
                          headers={"Authorization": BASIC}, timeout=5)
    assert blank.status_code == 400 and blank.json()["errors"][0]["field"] == "body"


def test_post_draft_is_not_repeated_after_a_server_error_but_is_after_429(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="ticket_note", status=503))
    with pytest.raises(ServerError):
        adapter.post_draft(str(number), "first try")
    assert sim.call_count("ticket_note") == 1

    sim.add_fault(Fault(endpoint="ticket_note", status=429, retry_after=0))
    adapter.post_draft(str(number), "second try")
    assert sim.call_count("ticket_note") == 3
    assert [n["body_text"] for n in sim.notes_by(sim.bot_agent_id)] == ["second try"]


def test_post_draft_without_an_id_in_the_answer_is_malformed(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.add_fault(Fault(endpoint="ticket_note", status=201, body={"private": True}))
    with pytest.raises(MalformedResponse, match="no id"):
        make_adapter(sim).post_draft(str(number), "note")


# ----- rate limits -------------------------------------------------------------------------------
def test_retry_after_is_honoured(sim: FreshdeskSimulator, make_adapter: MakeAdapter) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    sim.add_fault(Fault(endpoint="ticket_view", status=429, retry_after=1))
    make_adapter(sim).get_ticket(str(number))
    refused, served = [c for c in sim.calls if c.endpoint == "ticket_view"]
    assert (refused.status, served.status) == (429, 200)
    assert served.at - refused.at >= 0.99


def test_per_minute_credits_and_headers(sim: FreshdeskSimulator) -> None:
    with FreshdeskSimulator(rate_limit=4) as limited:
        number = limited.create_ticket(limited.add_contact("Carla"), "hello")
        plain = api_get(limited, f"/api/v2/tickets/{number}")
        embedded = api_get(limited, f"/api/v2/tickets/{number}", include="conversations")
        assert [(r.headers["X-RateLimit-Total"], r.headers["X-RateLimit-Remaining"],
                 r.headers["X-RateLimit-Used-CurrentRequest"]) for r in (plain, embedded)] == [
            ("4", "3", "1"), ("4", "1", "2"),
        ]
        assert api_get(limited, "/api/v2/agents/me").status_code == 200
        refused = api_get(limited, "/api/v2/agents/me")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 50
        assert refused.headers["X-RateLimit-Remaining"] == "0"
    with FreshdeskSimulator() as unlimited:
        listed = api_get(unlimited, "/api/v2/tickets", include="description,stats")
        assert listed.headers["X-RateLimit-Used-CurrentRequest"] == "5"  # 1 + 2 per include


def test_the_ticket_list_has_its_own_lower_limit_and_long_waits_are_parked(
    make_adapter: MakeAdapter,
) -> None:
    with FreshdeskSimulator(list_rate_limit=2) as sim:
        number = sim.create_ticket(sim.add_contact("Carla"), "hello")
        adapter = make_adapter(sim)
        cursor = adapter.poll_changes(None, LONG_AGO).cursor
        adapter.poll_changes(cursor, LONG_AGO)
        with pytest.raises(RateLimited) as limited:
            adapter.poll_changes(cursor, LONG_AGO)
        assert limited.value.retry_after is not None and limited.value.retry_after > 50
        assert api_get(sim, f"/api/v2/tickets/{number}").status_code == 200  # others still go


# ----- secrets -----------------------------------------------------------------------------------
def test_secrets_never_reach_the_logs(
    sim: FreshdeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    number = sim.create_ticket(sim.add_contact("Carla"), "hello")
    wrong_basic = base64.b64encode(b"wrong-fd-key:X").decode()
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        adapter = make_adapter(sim)
        adapter.check()
        walk(adapter, None)
        adapter.list_messages(adapter.get_ticket(str(number)))
        adapter.post_draft(str(number), "note")
        sim.add_fault(Fault(endpoint="ticket_view", status=503, times=1))
        adapter.get_ticket(str(number))  # a retry is logged
        with pytest.raises(AuthenticationFailed) as failure:
            make_adapter(sim, auth={"api_key": "wrong-fd-key"}).check()
        errors.append(str(failure.value))
    text = caplog.text + "\n".join(errors)
    assert "retry" in caplog.text and "ticket_view" in caplog.text  # logging did happen
    for secret in (API_KEY, BASIC.split()[1], "wrong-fd-key", wrong_basic):
        assert secret not in text
