"""The Zammad adapter against the Zammad simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pydantic import ValidationError
from support import SeenCalls

from adapters.auth import BearerTokenAuth
from adapters.base import ChangePage, Role, Ticket
from adapters.registry import adapter_class
from adapters.simulation import Fault
from adapters.text import body_text
from adapters.zammad import ZammadAdapter, ZammadSettings
from adapters.zammad.simulator import ZammadSimulator
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

TOKEN_AUTH = {"token": "zammad-token"}
BEARER_AUTH = {"access_token": "zammad-oauth"}
TOKEN_HEADER = {"Authorization": "Token token=zammad-token"}
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)
MARKER = "AI draft, Uppzy ref req_42"

MakeAdapter = Callable[..., ZammadAdapter]


@pytest.fixture
def sim() -> Iterator[ZammadSimulator]:
    simulator = ZammadSimulator(index_lag=0)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[ZammadAdapter] = []

    def make(simulator: ZammadSimulator, **overrides: Any) -> ZammadAdapter:
        config: dict[str, Any] = {
            "name": "zm", "type": "zammad", "url": simulator.url, "auth": TOKEN_AUTH,
        }
        adapter = ZammadAdapter(ZammadSettings(**{**config, **overrides}))
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def customer(sim: ZammadSimulator) -> int:
    return sim.add_user("Carla Customer", "customer", "carla@example.com")


@pytest.fixture
def agent(sim: ZammadSimulator) -> int:
    return sim.add_user("Alex Agent", "agent", "alex@example.com")


def search_params(sim: ZammadSimulator) -> SeenCalls[dict[str, list[str]]]:
    """The query of every ticket search the adapter really sent, as the simulator received it."""
    return SeenCalls(sim, lambda call: "/tickets/search" in call.path, lambda call: call.query)


def walk(adapter: ZammadAdapter, cursor: str | None,
         between: Callable[[int], None] | None = None) -> tuple[list[ChangePage], str]:
    """Poll until the adapter says there is nothing more right now (bounded)."""
    pages = [adapter.poll_changes(cursor, LONG_AGO)]
    while pages[-1].more:
        assert len(pages) < 40, "the change feed never ends"
        if between is not None:
            between(len(pages))
        pages.append(adapter.poll_changes(pages[-1].cursor, LONG_AGO))
    return pages, pages[-1].cursor


def ids(pages: list[ChangePage]) -> list[str]:
    return [ticket.external_id for page in pages for ticket in page.tickets]


def search(sim: ZammadSimulator, query: str, **params: Any) -> Any:
    answer = requests.get(f"{sim.url}/api/v1/tickets/search", headers=TOKEN_HEADER, timeout=5,
                          params={"query": query, "expand": "true", **params})
    assert answer.status_code == 200
    return answer.json()


# ----- settings ----------------------------------------------------------------------------------
def test_settings_errors_name_the_key_and_hide_secrets() -> None:
    base = {"name": "zm", "type": "zammad", "url": "https://helpdesk.example.com/api/v1"}
    with pytest.raises(ValidationError) as missing:
        ZammadSettings(**base, auth={})
    assert "auth.ZammadTokenAuth.token" in str(missing.value)
    with pytest.raises(ValidationError) as extra:
        ZammadSettings(**base, auth=TOKEN_AUTH, colour="blue")
    assert "colour" in str(extra.value)
    with pytest.raises(ValidationError) as size:
        ZammadSettings(**base, auth=TOKEN_AUTH, page_size=500)
    assert "page_size" in str(size.value)

    settings = ZammadSettings(**base, auth=TOKEN_AUTH, overlap="3m")
    assert settings.url == "https://helpdesk.example.com"
    assert settings.overlap == 180.0
    assert "zammad-token" not in repr(settings)
    assert isinstance(ZammadSettings(**base, auth=BEARER_AUTH).auth, BearerTokenAuth)


def test_adapter_is_found_through_its_entry_point() -> None:
    assert adapter_class("zammad") is ZammadAdapter
    assert ZammadAdapter.capabilities.drafts
    assert ZammadAdapter.capabilities.webhook == "zammad-hmac-sha1"


# ----- check -------------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", [TOKEN_AUTH, BEARER_AUTH], ids=["token", "oauth"])
def test_check_names_the_bot_agent(
    sim: ZammadSimulator, make_adapter: MakeAdapter, auth: dict[str, str]
) -> None:
    description = make_adapter(sim, auth=auth).check()
    assert description == f"user {sim.bot_user_id} (Uppzy Bot), roles: Agent"


def test_expired_tokens_are_refused_like_wrong_ones(make_adapter: MakeAdapter) -> None:
    """Zammad's OAuth2 access tokens live two hours; a personal access token may carry an
    expiry date. The adapter cannot renew either (it holds no refresh token): it reports an
    authentication failure, which pauses it."""
    with ZammadSimulator(access_token_lifetime=0) as sim:
        with pytest.raises(AuthenticationFailed):
            make_adapter(sim, auth={"access_token": "zammad-oauth"}).check()
        sim.add_api_token(sim.bot_user_id, "old-pat",
                          expires_at=datetime.now(UTC) - timedelta(days=1))
        with pytest.raises(AuthenticationFailed):
            make_adapter(sim, auth={"token": "old-pat"}).check()
        sim.add_api_token(sim.bot_user_id, "dated-pat",
                          expires_at=datetime.now(UTC) + timedelta(days=1))
        assert make_adapter(sim, auth={"token": "dated-pat"}).check().startswith("user ")
        assert make_adapter(sim).check().startswith("user ")  # no expiry date: no expiry


@pytest.mark.parametrize("auth", [{"token": "wrong"}, {"access_token": "wrong"}],
                         ids=["token", "oauth"])
def test_check_rejects_wrong_credentials(
    sim: ZammadSimulator, make_adapter: MakeAdapter, auth: dict[str, str]
) -> None:
    with pytest.raises(AuthenticationFailed) as failure:
        make_adapter(sim, auth=auth).check()
    assert failure.value.status == 401
    assert "Can't find User for Token" in str(failure.value)


def test_missing_credentials_are_refused_with_403(sim: ZammadSimulator) -> None:
    class Unauthenticated(ZammadAdapter):  # as when a proxy strips the Authorization header
        def auth_headers(self) -> dict[str, str]:
            return {}

    adapter = Unauthenticated(ZammadSettings(name="zm", type="zammad", url=sim.url,
                                             auth=TOKEN_AUTH))
    with pytest.raises(PermissionDenied, match="Authentication required"):
        adapter.check()
    adapter.close()


def test_check_refuses_a_customer_login(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    sim.add_api_token(customer, "carla-token")
    with pytest.raises(PermissionDenied, match="customer"):
        make_adapter(sim, auth={"token": "carla-token"}).check()


# ----- change feed -------------------------------------------------------------------------------
def test_search_query_escapes_the_time_and_sorts_oldest_first(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    ticket = sim.create_ticket(customer, "hello")
    adapter = make_adapter(sim, page_size=7)
    sent = search_params(sim)
    start = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    page = adapter.poll_changes(None, start)
    assert ids([page]) == [str(ticket)]
    assert sent[0]["query"] == ["updated_at:>=2024-05-06T07\\:08\\:09.123Z"]
    assert {k: v[0] for k, v in sent[0].items() if k != "query"} == {
        "sort_by": "updated_at", "order_by": "asc", "expand": "true", "per_page": "7",
        "page": "1",
    }
    # What a naive client sends gets no hits at all: Zammad hides the search error.
    assert search(sim, "updated_at:>=2024-05-06T07:08:09Z") == []
    assert search(sim, "updated_at:[2024-05-06T07:08:09Z TO *]") == []
    assert [t["id"] for t in search(sim, "updated_at:>=2024-05-06T07\\:08\\:09Z")] == [ticket]


def test_polls_dedupe_and_report_changes_again(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    first, second = sim.create_ticket(customer, "one"), sim.create_ticket(customer, "two")
    adapter = make_adapter(sim)
    pages, cursor = walk(adapter, None)
    assert ids(pages) == [str(first), str(second)]
    assert ids(walk(adapter, cursor)[0]) == []  # the overlap re-reads both, nothing is new
    sim.add_article(second, agent, "on it", internal=True)
    pages, cursor = walk(adapter, cursor)
    assert ids(pages) == [str(second)]
    assert ids(walk(adapter, cursor)[0]) == []


def test_a_change_indexed_late_is_found_through_the_overlap(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    adapter, naive = make_adapter(sim), make_adapter(sim, overlap=0)
    cursor = naive_cursor = walk(adapter, None)[1]
    sim.index_lag = 60
    slow = sim.create_ticket(customer, "indexed late")  # changed first, indexed last
    sim.index_lag = 0
    fast = sim.create_ticket(customer, "indexed at once")
    assert search(sim, f"id:{slow}") == []

    pages, cursor = walk(adapter, cursor)
    naive_pages, naive_cursor = walk(naive, naive_cursor)
    assert ids(pages) == ids(naive_pages) == [str(fast)]
    sim.flush_index()
    assert ids(walk(adapter, cursor)[0]) == [str(slow)]
    assert ids(walk(naive, naive_cursor)[0]) == []  # without the overlap it is lost


def test_hits_are_matched_on_the_index_but_show_the_database(
    sim: ZammadSimulator, customer: int, agent: int
) -> None:
    ticket = sim.create_ticket(customer, "hello")
    indexed = sim.ticket_json(ticket)["updated_at"]
    sim.index_lag = 60
    sim.add_article(ticket, agent, "a reply")
    now = sim.ticket_json(ticket)["updated_at"]
    hits = search(sim, "updated_at:>=" + indexed.replace(":", "\\:"))
    assert [(h["id"], h["updated_at"]) for h in hits] == [(ticket, now)]
    assert search(sim, "updated_at:>=" + now.replace(":", "\\:")) == []


def test_a_burst_across_pages_loses_nothing_while_tickets_change(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    tickets = [str(sim.create_ticket(customer, f"question {n}")) for n in range(6)]
    adapter = make_adapter(sim, page_size=2)
    start = walk(adapter, None)[1]  # everything so far reported once
    sim.add_tags(int(tickets[0]), "a")  # all inside one overlap window: offset paging
    sim.add_tags(int(tickets[1]), "b")  # search order now 2 3 | 4 5 | 0 1
    changed = [tickets[0], tickets[1]]

    def change_while_paging(done: int) -> None:
        if done == 2:  # ticket 2 moves to the end: page 3 starts at 1, skipping 0
            sim.add_tags(int(tickets[2]), "moved")
            changed.extend([tickets[2], str(sim.create_ticket(customer, "new while paging"))])

    pages, cursor = walk(adapter, start, change_while_paging)
    seen = Counter(ids(pages))
    assert set(seen) == set(changed)
    assert all(count == 1 for count in seen.values()), seen
    assert all(len(page.tickets) <= 2 for page in pages)
    assert ids(walk(adapter, cursor)[0]) == []


def test_a_backlog_is_walked_by_time_bound_so_a_moving_ticket_skips_nothing(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    tickets = []
    for n in range(6):  # each change older than the overlap by the time the next comes
        tickets.append(str(sim.create_ticket(customer, f"old question {n}")))
        time.sleep(0.02)
    adapter = make_adapter(sim, page_size=2, overlap="10ms")
    sent = search_params(sim)

    def change_while_paging(done: int) -> None:
        if done == 1:
            sim.add_tags(int(tickets[0]), "moved")

    pages, cursor = walk(adapter, None, change_while_paging)
    seen = ids(pages)
    assert set(seen) == set(tickets) and seen.count(tickets[0]) == 2
    assert any(q["page"] == ["1"] and q["query"] != sent[0]["query"] for q in sent[1:]), (
        "the walk never moved its time bound"
    )
    assert ids(walk(adapter, cursor)[0]) == []


def test_resuming_from_any_cursor_repeats_nothing_and_loses_nothing(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    tickets = [str(sim.create_ticket(customer, f"question {n}")) for n in range(5)]
    adapter = make_adapter(sim, page_size=2)
    first = adapter.poll_changes(None, LONG_AGO)
    resumed = make_adapter(sim, page_size=2)  # a restarted daemon with the stored cursor
    rest, _ = walk(resumed, first.cursor)
    assert sorted(ids([first]) + ids(rest)) == sorted(tickets)


def test_filters_keep_matching_tickets_and_the_cursor_still_advances(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    sales = sim.add_group("Sales")
    wanted = sim.create_ticket(customer, "yes", group_id=sales)
    sim.add_tags(wanted, "vip")
    sim.create_ticket(customer, "wrong group")
    untagged = sim.create_ticket(customer, "no tag", group_id=sales)
    adapter = make_adapter(sim, group_ids=[sales], tags=["vip", "gold"])

    pages, cursor = walk(adapter, None)
    assert ids(pages) == [str(wanted)]
    assert pages[0].tickets[0].tags == {"vip"}
    assert json.loads(cursor)["seen"].keys() >= {str(wanted), str(untagged)}
    sim.add_tags(untagged, "gold")
    assert ids(walk(adapter, cursor)[0]) == [str(untagged)]


def test_malformed_hits_are_skipped_and_the_rest_kept(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [sim.create_ticket(customer, "fine"), sim.create_ticket(customer, "also fine")]
    broken = sim.create_ticket(customer, "broken")
    no_id = {**sim.ticket_json(good[0]), "title": "secret customer words"}
    del no_id["id"]
    sim.corrupt_ticket(broken)
    hits = [sim.ticket_json(good[0]), no_id, "not a ticket", sim.ticket_json(broken),
            sim.ticket_json(good[1])]
    sim.add_fault(Fault(endpoint="tickets_search", status=200, body=hits))
    with caplog.at_level(logging.WARNING, logger="adapters.zammad"):
        page = make_adapter(sim).poll_changes(None, LONG_AGO)
    assert ids([page]) == [str(good[0]), str(good[1])]
    assert str(broken) in json.loads(page.cursor)["seen"]  # skipped, not retried forever
    assert len(caplog.records) == 3 and str(broken) in caplog.records[-1].getMessage()
    assert "secret customer words" not in caplog.text


def test_an_unreadable_cursor_restarts_from_the_start_time(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticket = sim.create_ticket(customer, "hello")
    with caplog.at_level(logging.WARNING, logger="adapters.zammad"):
        page = make_adapter(sim).poll_changes("start_time:12345", LONG_AGO)
    assert ids([page]) == [str(ticket)] and "unreadable cursor" in caplog.text


def test_search_quirks_of_the_simulator(sim: ZammadSimulator, customer: int) -> None:
    for n in range(3):
        sim.create_ticket(customer, f"q{n}", title=f"Printer {n}")
    assert len(search(sim, "Printer", per_page=1000)) == 3  # capped at 200, not refused
    assert search(sim, "Printer", per_page=2, page=5001) == []  # beyond the 10k window
    with ZammadSimulator(index_lag=0, search_index=False) as plain:
        plain.create_ticket(plain.add_user("Carla C", "customer"), "q")
        assert requests.get(
            f"{plain.url}/api/v1/tickets/search", timeout=5, headers=TOKEN_HEADER,
            params={"query": "updated_at:>=2000-01-01", "expand": "true"},
        ).json() == []  # without Elasticsearch field queries find nothing


def test_backfill_lists_the_window_without_touching_the_live_cursor(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    inside = [str(sim.create_ticket(customer, f"waiting {n}")) for n in range(5)]
    until = datetime.fromisoformat(sim.ticket_json(int(inside[-1]))["updated_at"])
    time.sleep(0.01)
    after = str(sim.create_ticket(customer, "too late"))
    adapter = make_adapter(sim, page_size=2)
    pages = list(adapter.list_tickets(LONG_AGO, until))
    listed = [t.external_id for page in pages for t in page]
    assert sorted(set(listed)) == sorted(inside) and after not in listed
    assert ids(walk(adapter, None)[0]) == [*inside, after]  # the live feed starts afresh


# ----- tickets and states ------------------------------------------------------------------------
def test_resolved_by_state_type_including_custom_states(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    solved = sim.add_state("solved", "closed")
    waiting = sim.add_state("waiting for vendor", "pending reminder")
    states = {"closed": True, "merged": True, "pending close": False, "open": False,
              solved: True, waiting: False}
    tickets = {sim.create_ticket(customer, "q"): resolved for resolved in states.values()}
    for ticket, state in zip(tickets, states, strict=True):
        sim.set_state(ticket, state)
    adapter = make_adapter(sim)

    pages, _ = walk(adapter, None)
    assert {t.external_id: t.resolved for page in pages for t in page.tickets} == {
        str(ticket): resolved for ticket, resolved in tickets.items()
    }
    assert sim.call_count("ticket_states") == 1
    later = sim.add_state("solved by phone", "closed")  # an admin adds a state meanwhile
    first = next(iter(tickets))
    sim.set_state(first, later)
    assert adapter.get_ticket(str(first)).resolved
    assert sim.call_count("ticket_states") == 2


def test_a_merged_ticket_is_resolved_and_its_articles_move_with_their_ids(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    source, target = sim.create_ticket(customer, "first"), sim.create_ticket(customer, "second")
    moved = [a["id"] for a in sim.articles(source)]
    adapter = make_adapter(sim)
    cursor = walk(adapter, None)[1]
    sim.merge_ticket(source, target, agent)
    reports = {t.external_id: t for page in walk(adapter, cursor)[0] for t in page.tickets}
    assert reports[str(source)].resolved and reports[str(source)].status == "merged"
    assert not reports[str(target)].resolved
    assert [(m.body, m.role, m.public) for m in adapter.list_messages(_bare(str(source)))] == [
        ("merged", Role.AGENT, True)
    ]
    on_target = [m.external_id for m in adapter.list_messages(_bare(str(target)))]
    assert set(map(str, moved)) <= set(on_target)


def test_ticket_fields_are_normalised(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    number = sim.create_ticket(customer, "hi", title="Late order", channel="web")
    sim.add_tags(number, "vip")
    ticket = make_adapter(sim).get_ticket(str(number))
    assert (ticket.subject, ticket.requester_id, ticket.channel, ticket.status) == (
        "Late order", str(customer), "web", "new",
    )
    assert ticket.tags == {"vip"} and not ticket.resolved
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo == UTC
    assert abs(ticket.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert ticket.url == f"{sim.url}/#ticket/zoom/{number}"


def test_unknown_deleted_and_foreign_tickets(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    adapter = make_adapter(sim)
    for ticket_id in ("999", "../users/me", "12?expand=true"):
        with pytest.raises(NotFound):
            adapter.get_ticket(ticket_id)
    assert sim.call_count("ticket_show") == 1
    gone, other = sim.create_ticket(customer, "bye"), sim.create_ticket(customer, "stays")
    cursor = walk(adapter, None)[1]
    sim.delete_ticket(gone)
    sim.add_tags(other, "still here")
    assert ids(walk(adapter, cursor)[0]) == [str(other)]  # no trace of the deleted one
    with pytest.raises(NotFound):
        adapter.list_messages(_bare(str(gone)))
    hidden_group = sim.add_group("Management")
    sim.revoke_group(sim.bot_user_id, hidden_group)
    secret = sim.create_ticket(customer, "secret", group_id=hidden_group)
    with pytest.raises(PermissionDenied):
        adapter.get_ticket(str(secret))
    assert str(secret) not in ids(walk(adapter, None)[0])


def _bare(ticket_id: str) -> Ticket:
    """What the engine hands ``list_messages`` when it knows no more than the id."""
    return Ticket(external_id=ticket_id, status="", resolved=False)


# ----- messages ----------------------------------------------------------------------------------
def test_roles_visibility_and_order(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    number = sim.create_ticket(customer, "My parcel is late")
    sim.add_system_article(number, "We received your request")
    sim.add_article(number, agent, "Checking with the courier", internal=True)
    sim.add_article(number, agent, "It ships tomorrow")
    sim.add_article(number, customer, "Thank you!")
    adapter = make_adapter(sim)
    messages = adapter.list_messages(adapter.get_ticket(str(number)))
    assert [(m.body, m.role, m.public) for m in messages] == [
        ("My parcel is late", Role.CUSTOMER, True),
        ("We received your request", Role.SYSTEM, True),
        ("Checking with the courier", Role.AGENT, False),
        ("It ships tomorrow", Role.AGENT, True),
        ("Thank you!", Role.CUSTOMER, True),
    ]
    assert [m.author_id for m in messages] == [
        str(customer), "1", str(agent), str(agent), str(customer)
    ]
    assert all(m.ticket_id == str(number) for m in messages)


def test_sender_ids_stand_in_for_missing_names_and_bad_articles_are_skipped(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    number = sim.create_ticket(customer, "secret customer words")
    served = sim.articles(number)
    by_id = {**served[0], "id": 9001}
    del by_id["sender"]
    broken = {**served[0], "created_at": None}
    sim.add_fault(Fault(endpoint="articles_by_ticket", status=200, body=[by_id, broken]))
    adapter = make_adapter(sim)
    with caplog.at_level(logging.WARNING, logger="adapters.zammad"):
        messages = adapter.list_messages(_bare(str(number)))
    assert [(m.external_id, m.role) for m in messages] == [("9001", Role.CUSTOMER)]
    assert str(number) in caplog.text and "secret customer words" not in caplog.text
    sim.add_fault(Fault(endpoint="articles_by_ticket", status=200, body={"articles": []}))
    with pytest.raises(MalformedResponse):
        adapter.list_messages(_bare(str(number)))


def test_html_becomes_clean_text_and_only_customers_lose_quotes(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    number = sim.create_ticket(
        customer, "<p>Hi team &amp; thanks</p><ol><li>Order #42</li></ol>"
        '<p>See <a href="https://shop.example/o/42">my order</a></p>'
        "<blockquote>On Monday Support wrote:<br>old answer</blockquote>", html=True,
    )
    sim.add_article(number, agent, f"<p>Done.</p><p>Best regards,<br>Alex</p><p>— {MARKER}</p>",
                    html=True)
    adapter = make_adapter(sim)
    question, answer = adapter.list_messages(_bare(str(number)))
    assert question.body == (
        "Hi team & thanks\n\n  1. Order #42\n\nSee [my order](https://shop.example/o/42)"
    )
    assert answer.body == f"Done.\n\nBest regards,\nAlex\n\n— {MARKER}"


# ----- posting -----------------------------------------------------------------------------------
def test_post_draft_writes_the_shared_draft_an_agent_then_sends(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    number = sim.create_ticket(customer, "Where is my parcel?", title="Parcel")
    adapter = make_adapter(sim)
    cursor = walk(adapter, None)[1]
    text = f"It ships <tomorrow>.\nTracking follows.\n\n— {MARKER}"

    posted = adapter.post_draft(str(number), text)

    draft = sim.shared_draft(number)
    assert draft is not None
    assert (posted.external_id, posted.kind) == (f"draft:{draft['id']}", "draft")
    article = draft["new_article"]
    assert body_text(html=article["body"]) == text
    assert {k: article[k] for k in ("type", "internal", "content_type", "to", "subject")} == {
        "type": "email", "internal": False, "content_type": "text/html",
        "to": "carla@example.com", "subject": "Parcel",
    }
    assert all(a["created_by_id"] != sim.bot_user_id for a in sim.articles(number))
    ticket = adapter.get_ticket(str(number))
    assert adapter.find_posted(ticket, MARKER) == posted.external_id
    assert adapter.find_posted(ticket, "AI draft, Uppzy ref other") is None
    # The draft touched the ticket: it comes back in the feed, with nothing new to answer.
    pages, cursor = walk(adapter, cursor)
    assert ids(pages) == [str(number)]
    assert [m.role for m in adapter.list_messages(ticket)] == [Role.CUSTOMER]

    sent = sim.send_shared_draft(number, agent)
    assert sim.shared_draft(number) is None
    last = adapter.list_messages(ticket)[-1]
    assert (last.external_id, last.role, last.public) == (str(sent), Role.AGENT, True)
    assert MARKER in last.body and adapter.find_posted(ticket, MARKER) == str(sent)


def test_post_draft_adds_a_note_where_drafts_are_not_possible(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int, agent: int
) -> None:
    no_drafts = sim.add_group("Billing", shared_drafts=False)
    in_billing = sim.create_ticket(customer, "invoice?", group_id=no_drafts)
    busy = sim.create_ticket(customer, "parcel?")
    sim.write_shared_draft(busy, agent, "Alex is writing this")
    adapter = make_adapter(sim)

    for number in (in_billing, busy):
        posted = adapter.post_draft(str(number), f"Answer\nline two\n\n— {MARKER}")
        note = sim.articles(number)[-1]
        assert (posted.external_id, posted.kind) == (str(note["id"]), "note")
        assert (note["type"], note["internal"], note["sender"]) == ("note", True, "Agent")
        assert body_text(html=note["body"]) == f"Answer\nline two\n\n— {MARKER}"
        assert adapter.find_posted(_bare(str(number)), MARKER) == posted.external_id
    draft = sim.shared_draft(busy)
    assert draft is not None and draft["new_article"]["body"] == "Alex is writing this"
    assert sim.shared_draft(in_billing) is None


def test_notes_only_when_configured_or_when_groups_cannot_be_read(
    make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with ZammadSimulator(index_lag=0, groups_need_admin=True) as sim:
        customer = sim.add_user("Carla C", "customer")
        tickets = [sim.create_ticket(customer, f"q{n}") for n in range(3)]
        configured = make_adapter(sim, shared_drafts=False)
        assert configured.post_draft(str(tickets[0]), "a").kind == "note"
        assert sim.call_count("group_show") == 0
        adapter = make_adapter(sim)
        with caplog.at_level(logging.WARNING, logger="adapters.zammad"):
            kinds = [adapter.post_draft(str(t), "b").kind for t in tickets[1:]]
        assert kinds == ["note", "note"]
        assert sim.call_count("group_show") == 1  # the refusal is remembered
        assert "admin.group" in caplog.text


def test_simulator_makes_articles_public_unless_told_otherwise(
    sim: ZammadSimulator, customer: int
) -> None:
    number = sim.create_ticket(customer, "hello")
    sim.add_api_token(customer, "carla-token")
    for token in ("zammad-token", "carla-token"):
        answer = requests.post(
            f"{sim.url}/api/v1/ticket_articles", timeout=5,
            headers={"Authorization": f"Token token={token}"},
            json={"ticket_id": number, "body": "hi", "type": "note",
                  "internal": token == "carla-token"},
        )
        assert answer.status_code == 201 and answer.json()["internal"] is False


def test_a_note_is_not_repeated_after_a_server_error_but_is_after_429(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    number = sim.create_ticket(customer, "hello")
    adapter = make_adapter(sim, shared_drafts=False)
    sim.add_fault(Fault(endpoint="article_create", status=503))
    with pytest.raises(ServerError):
        adapter.post_draft(str(number), "first try")
    assert sim.call_count("article_create") == 1

    sim.add_fault(Fault(endpoint="article_create", status=429, retry_after=0))
    adapter.post_draft(str(number), "second try")
    assert sim.call_count("article_create") == 3
    assert [body_text(html=p["body"]) for p in sim.posts_by(sim.bot_user_id)] == ["second try"]


def test_a_post_answer_without_an_id_is_malformed(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int
) -> None:
    number = sim.create_ticket(customer, "hello")
    adapter = make_adapter(sim)
    sim.add_fault(Fault(endpoint="shared_draft_update", status=200, body={"assets": {}}))
    with pytest.raises(MalformedResponse, match="draft id"):
        adapter.post_draft(str(number), "text")


# ----- rate limits and secrets -------------------------------------------------------------------
def test_per_minute_limit_reports_headers_and_parks_long_waits(make_adapter: MakeAdapter) -> None:
    with ZammadSimulator(index_lag=0, rate_limit=3) as sim:
        remaining = []
        for _ in range(2):
            answer = requests.get(f"{sim.url}/api/v1/users/me", headers=TOKEN_HEADER, timeout=5)
            assert answer.headers["X-RateLimit-Limit"] == "3"
            remaining.append(answer.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1"]
        adapter = make_adapter(sim)
        adapter.check()
        with pytest.raises(RateLimited) as limited:
            adapter.check()
        assert limited.value.retry_after is not None and limited.value.retry_after > 50


def test_secrets_never_reach_the_logs(
    sim: ZammadSimulator, make_adapter: MakeAdapter, customer: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    number = sim.create_ticket(customer, "hello")
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
        for wrong in ({"token": "wrong-token"}, {"access_token": "wrong-oauth"}):
            with pytest.raises(AuthenticationFailed) as failure:
                make_adapter(sim, auth=wrong).check()
            errors.append(str(failure.value))
    text = caplog.text + "\n".join(errors)
    assert "retry" in caplog.text and "ticket_show" in caplog.text  # logging did happen
    for secret in ("zammad-token", "zammad-oauth", "wrong-token", "wrong-oauth"):
        assert secret not in text
