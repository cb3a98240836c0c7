"""The mechanics every adapter shares: cursors, page loops, backfill replay, times, credentials.

The vendor test files exercise these through each simulator; here each rule is pinned on its
own, and the cursors users already have in their databases are loaded from literal strings as
the earlier releases wrote them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from threading import Barrier
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.auth import basic_authorization, token_authorization
from adapters.base import AdapterSettings, Capabilities, ChangePage, FilteredSettings, Ticket
from adapters.freshdesk.positions import FeedCursor, Position
from adapters.helpscout.adapter import Walk
from adapters.paging import follow_pages, link_query
from adapters.replay import FeedOrder, ReplayAdapter
from adapters.times import iso_millis, iso_seconds, server_time, utc, whole_second
from adapters.zammad.adapter import SearchPosition
from adapters.zendesk import ZendeskAdapter, ZendeskSettings
from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import MalformedResponse
from connector.core.redact import redact

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


# ----- cursors: what earlier releases stored still loads ------------------------------------
def test_help_scout_pipe_cursors_of_version_1_load() -> None:
    walk = Walk.load("hs1|2024-03-01T09:00:00Z|3|2024-03-01T09:05:00Z|120")
    assert walk == Walk(T0, 3, T0 + timedelta(minutes=5), 120)
    assert Walk.load("hs1|2024-03-01T09:00:00Z|1|-|0") == Walk(T0)


def test_zammad_cursors_of_version_1_load() -> None:
    old = ('{"fresh":true,"page":2,"paged":true,"seen":{"7":"2024-03-01T09:00:00.123Z"},'
           '"since":"2024-03-01T08:58:00.123Z","v":1}')
    position = SearchPosition.load(old)
    assert position == SearchPosition(
        datetime(2024, 3, 1, 8, 58, 0, 123000, tzinfo=UTC), 2,
        {"7": "2024-03-01T09:00:00.123Z"}, paged=True, fresh=True,
    )


def test_freshdesk_cursors_of_version_2_load_with_and_without_the_late_sweep_fields() -> None:
    full = ('{"v":2,"since":"2024-03-01T09:00:00Z","page":3,"newest":"2024-03-01T09:00:05Z",'
            '"seen":["9","12"],"swept":"2024-03-01T08:00:00Z","removed":{"deleted":'
            '"2024-03-01T07:00:00Z","spam":"2024-03-01T07:30:00Z"},"sweep":["spam"],'
            '"sweep_page":2,"swept_before":"2024-03-01T07:55:00Z"}')
    cursor = FeedCursor.load(full)
    assert cursor is not None
    assert (cursor.feed.since, cursor.feed.page, cursor.feed.seen) == (T0, 3, {"9", "12"})
    assert cursor.feed.newest == T0 + timedelta(seconds=5)
    assert cursor.sweep.pending == ("spam",) and cursor.sweep.page == 2
    assert cursor.sweep.anchors == {"deleted": T0 - timedelta(hours=2),
                                    "spam": T0 - timedelta(minutes=90)}
    assert cursor.sweep.before == T0 - timedelta(minutes=65)

    older = ('{"v":2,"since":"2024-03-01T08:00:00Z","page":1,"newest":"2024-03-01T08:00:00Z",'
             '"seen":[],"swept":"2024-03-01T08:00:00Z","removed":{"deleted":'
             '"2024-03-01T08:00:00Z","spam":"2024-03-01T08:00:00Z"},"sweep":[]}')
    cursor = FeedCursor.load(older)
    assert cursor is not None
    assert cursor.sweep.page == 1 and cursor.sweep.before == cursor.sweep.at  # the defaults


@pytest.mark.parametrize("cursor", [
    Walk(T0, 4, T0 + timedelta(seconds=7), 230),
    Walk(T0),
    SearchPosition(T0 + timedelta(milliseconds=250), 3, {"5": "2024-03-01T09:00:01.500Z"},
                   paged=True),
    FeedCursor.start(T0),
])
def test_cursors_round_trip_through_their_text(cursor: Any) -> None:
    text = cursor.dump()
    assert type(cursor).load(text) == cursor
    assert type(cursor).load(text).dump() == text  # stable: the engine compares cursor texts


def test_a_cursor_keeps_the_precision_its_vendor_compares_at() -> None:
    when = T0 + timedelta(microseconds=123_456)
    assert '"since":"2024-03-01T09:00:00Z"' in Walk(when).dump()
    assert '"since":"2024-03-01T09:00:00.123Z"' in SearchPosition(when).dump()


def test_a_freshdesk_cursor_lists_seen_ids_in_numeric_order() -> None:
    cursor = FeedCursor(Position(T0, 1, frozenset({"10", "9", "100"})), FeedCursor.start(T0).sweep)
    assert '"seen":["9","10","100"]' in cursor.dump()


@pytest.mark.parametrize("text", [
    "garbage|x",
    "start_time:12345",  # Zendesk's cursor in another adapter's database
    "hs1|not a time|1|-|0",
    "hs1|2024-03-01T09:00:00Z|0|-|0",  # pages count from 1
    '{"cursor":"helpscout","v":99,"since":"2024-03-01T09:00:00Z"}',  # a newer release's
    '{"cursor":"zammad","v":2,"since":"2024-03-01T09:00:00Z"}',  # another adapter's
    '{"cursor":"helpscout","v":2,"since":"2024-03-01T09:00:00Z","page":-1}',
    "[]",
])
def test_help_scout_refuses_what_is_not_its_cursor(text: str) -> None:
    assert Walk.load(text) is None


@pytest.mark.parametrize("change", [
    ('"seen":["9","12"]', '"seen":["9","x"]'),  # ticket ids are digits
    ('"sweep":["spam"]', '"sweep":["junk"]'),  # only the removed views
    ('"sweep_page":2', '"sweep_page":301'),  # beyond Freshdesk's page-depth cap
    ('"spam":"2024-03-01T07:30:00Z"', '"other":"2024-03-01T07:30:00Z"'),  # an anchor per view
])
def test_freshdesk_refuses_a_version_2_cursor_with_a_wrong_field(change: tuple[str, str]) -> None:
    full = ('{"v":2,"since":"2024-03-01T09:00:00Z","page":3,"newest":"2024-03-01T09:00:05Z",'
            '"seen":["9","12"],"swept":"2024-03-01T08:00:00Z","removed":{"deleted":'
            '"2024-03-01T07:00:00Z","spam":"2024-03-01T07:30:00Z"},"sweep":["spam"],'
            '"sweep_page":2,"swept_before":"2024-03-01T07:55:00Z"}')
    assert FeedCursor.load(full) is not None
    assert FeedCursor.load(full.replace(*change)) is None


def test_resume_starts_over_from_an_unreadable_cursor_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    start = Walk(T0)
    with caplog.at_level(logging.WARNING):
        assert Walk.resume(None, start, "hs") is start
        assert Walk.resume("", start, "hs") is start
        assert not caplog.records  # a first poll is no problem
        assert Walk.resume("garbage", start, "hs") is start
    assert "hs: unreadable cursor 'garbage'" in caplog.text
    stored = Walk(T0, 2)
    assert Walk.resume(stored.dump(), start, "hs") == stored


# ----- follow_pages -------------------------------------------------------------------------
def pages_of(sizes: dict[int, int]) -> tuple[list[int], Any]:
    """A reader over numbered pages: ``sizes`` page -> items; the last page has no next."""
    asked: list[int] = []

    def read(page: int) -> tuple[list[str], int | None]:
        asked.append(page)
        return [f"{page}.{i}" for i in range(sizes[page])], page + 1 if page + 1 in sizes else None

    return asked, read


def follow(read: Any, first: Any, **kwargs: Any) -> Iterator[list[Any]]:
    options = {"limit": 10, "what": "hd things: ticket 5", "noun": "things",
               "endpoint": "things", **kwargs}
    return follow_pages(read, first, **options)


def test_follow_pages_reads_every_page_in_order_until_the_last() -> None:
    asked, read = pages_of({1: 2, 2: 2, 3: 1})
    assert list(follow(read, 1)) == [["1.0", "1.1"], ["2.0", "2.1"], ["3.0"]]
    assert asked == [1, 2, 3]


def test_a_next_page_read_before_ends_the_listing_as_malformed() -> None:
    asked: list[Any] = []

    def read(after: str | None) -> tuple[list[str], str]:
        asked.append(after)
        return ["x"], "same"  # a vendor cursor that never moves

    with pytest.raises(MalformedResponse, match="pages of things never end: the next one repeats"):
        list(follow(read, None))
    assert asked == [None, "same"]


def test_the_repeat_guard_compares_queries_by_their_content() -> None:
    asked: list[dict[str, Any]] = []

    def read(query: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        asked.append(query)
        return ["x"], {"page": 2, "size": 50} if len(asked) % 2 else {"size": 50, "page": 2}

    with pytest.raises(MalformedResponse, match="repeats"):
        list(follow(read, {"page": 1}))
    assert len(asked) == 2


def test_a_listing_longer_than_the_cap_is_refused_after_exactly_the_cap() -> None:
    asked, read = pages_of({page: 1 for page in range(1, 100)})
    with pytest.raises(MalformedResponse, match="ticket 5 has more than 4 pages of things"):
        list(follow(read, 1, limit=4))
    assert asked == [1, 2, 3, 4]


def test_a_lenient_listing_keeps_what_it_read_and_logs_the_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked, read = pages_of({page: 1 for page in range(1, 100)})
    with caplog.at_level(logging.WARNING):
        pages = list(follow(read, 1, limit=3, strict=False))
    assert pages == [["1.0"], ["2.0"], ["3.0"]] and asked == [1, 2, 3]
    assert "has more than 3 pages of things; stopped there" in caplog.text


def test_next_links_keep_only_their_query_and_their_path() -> None:
    href = "https://api.vendor.example/v2/things?page=3&size=50"
    assert link_query(href, "/v2/things", "things") == {"page": "3", "size": "50"}
    with pytest.raises(MalformedResponse, match="next link leads to '/v2/other'"):
        link_query("https://api.vendor.example/v2/other?page=3", "/v2/things", "things")


# ----- backfill replay ----------------------------------------------------------------------
def ticket(number: int, minute: int | None) -> Ticket:
    changed = None if minute is None else T0 + timedelta(minutes=minute)
    return Ticket(str(number), "open", False, updated_at=changed)


class Replayed(ReplayAdapter):
    """A feed of fixed pages; the cursor is the next page's index."""

    type_name = "replayed"
    capabilities = Capabilities(drafts=False)
    feed_order = FeedOrder.LATEST_CHANGE
    pages: list[list[Ticket]] = []

    def poll_changes(self, cursor: str | None, start_from: datetime) -> ChangePage:
        index = int(cursor or 0)
        return ChangePage(self.pages[index], str(index + 1), index + 1 < len(self.pages))

    def check(self) -> str:
        raise NotImplementedError

    def get_ticket(self, ticket_id: str) -> Ticket:
        raise NotImplementedError

    def list_messages(self, ticket: Ticket) -> list[Any]:
        raise NotImplementedError

    def post_draft(self, ticket_id: str, text: str) -> Any:
        raise NotImplementedError


def replay(order: FeedOrder, pages: list[list[Ticket]], until_minute: int | None,
           limit: int = 100) -> list[list[str]]:
    adapter = Replayed(AdapterSettings(name="replayed", type="replayed", url="http://127.0.0.1:9"))
    adapter.pages, adapter.feed_order, adapter.max_backfill_pages = pages, order, limit
    until = None if until_minute is None else T0 + timedelta(minutes=until_minute)
    try:
        return [[t.external_id for t in page] for page in adapter.list_tickets(T0, until)]
    finally:
        adapter.close()


PAGES = [[ticket(1, 1), ticket(2, 2)], [ticket(3, 3), ticket(4, 9), ticket(5, 4)],
         [ticket(6, 8), ticket(7, None)], [ticket(8, 12)]]


def test_a_feed_in_change_order_ends_at_the_first_ticket_after_the_window() -> None:
    assert replay(FeedOrder.LATEST_CHANGE, PAGES, 5) == [["1", "2"], ["3"]]
    assert replay(FeedOrder.LATEST_CHANGE, PAGES, None) == [
        ["1", "2"], ["3", "4", "5"], ["6", "7"], ["8"]]


def test_a_feed_in_index_order_keeps_each_page_s_tickets_by_their_own_time() -> None:
    # Ticket 4 is late but 5 behind it is not: the page is kept by ticket, and the listing ends
    # only after a page with nothing left in the window.
    assert replay(FeedOrder.INDEXED_CHANGE, PAGES, 5) == [["1", "2"], ["3", "5"], ["7"], []]
    assert replay(FeedOrder.INDEXED_CHANGE, PAGES, 2) == [["1", "2"], []]


def test_an_unordered_feed_is_read_to_its_end() -> None:
    assert replay(FeedOrder.UNORDERED, PAGES, 3) == [["1", "2"], ["3"], ["7"], []]


def test_a_replay_stops_at_its_page_cap(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert replay(FeedOrder.UNORDERED, PAGES, None, limit=2) == [["1", "2"], ["3", "4", "5"]]
    assert "replayed backfill listing has more than 2 pages of tickets" in caplog.text


# ----- times --------------------------------------------------------------------------------
def test_times_are_utc_and_naive_times_are_taken_as_utc() -> None:
    naive = datetime(2024, 3, 1, 9, 0, 0, 987_654)
    cet = datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert utc(naive) == naive.replace(tzinfo=UTC) and utc(cet) == T0
    assert utc(cet).tzinfo is UTC
    assert whole_second(naive) == T0
    assert iso_seconds(cet) == "2024-03-01T09:00:00Z"
    assert iso_millis(naive) == "2024-03-01T09:00:00.987Z"


def test_server_time_is_the_date_header_else_our_clock() -> None:
    assert server_time({"Date": "Fri, 01 Mar 2024 09:00:00 GMT"}) == T0
    before = datetime.now(UTC)
    assert before <= server_time({}) <= datetime.now(UTC)
    assert before <= server_time({"Date": "yesterday"}) <= datetime.now(UTC)


# ----- credentials and filters --------------------------------------------------------------
def test_basic_authorization_registers_the_secret_parts_and_the_pair() -> None:
    header = basic_authorization("carla@example.com/token", SecretStr("tok-4f9a1c"))
    encoded = header.removeprefix("Basic ")
    assert redact(f"sent {encoded} with tok-4f9a1c") == "sent *** with ***"
    assert "carla@example.com" in redact("user carla@example.com/token")  # not a secret
    keyed = basic_authorization(SecretStr("key-8d2e7b"), "X")
    assert redact(f"{keyed} key-8d2e7b") == "Basic *** ***"


def test_token_authorization_writes_the_vendor_s_form_and_registers_the_token() -> None:
    assert token_authorization("Token token={}", SecretStr("zm-77c3e1")) == "Token token=zm-77c3e1"
    assert redact("zm-77c3e1") == "***"


class Filtered(FilteredSettings):
    brand_ids: list[int] = []


def test_filters_pass_a_ticket_matching_every_filter_that_is_set() -> None:
    base = {"name": "f", "type": "f", "url": "http://127.0.0.1:9"}
    raw = {"group_id": 1, "brand_id": 7, "tags": ["vip", "de"]}
    assert Filtered(**base).wants(raw)
    settings = Filtered(**base, group_ids=[1, 2], tags=["vip"], brand_ids=[7])
    assert settings.wants(raw, brand_id=settings.brand_ids)
    assert not settings.wants({**raw, "brand_id": 8}, brand_id=settings.brand_ids)
    assert not settings.wants({**raw, "group_id": 3})
    assert not settings.wants({**raw, "tags": ["de"]})
    assert not settings.wants({**raw, "tags": "vip"})  # a string is no list of tags
    assert settings.wants_tags(frozenset({"vip"})) and settings.wants_ids(raw)


def test_an_api_base_in_the_url_is_taken_for_the_root() -> None:
    class Suffixed(AdapterSettings):
        api_suffix = "/api/v2"

    settings = Suffixed(name="s", type="s", url="https://acme.example.com/api/v2/")
    assert settings.url == "https://acme.example.com"
    assert AdapterSettings(name="s", type="s", url="https://a.example/x/").url == \
        "https://a.example/x"


# ----- connections ---------------------------------------------------------------------------
def _concurrent_reads(pool_size: int, threads: int, caplog: pytest.LogCaptureFixture) -> int:
    """Reads from ``threads`` threads at once, twice; how many connections were thrown away
    for want of room in the pool (urllib3 says so on its logger)."""
    sim = ZendeskSimulator(exclude_newest=0, api_token="t").start()
    adapter = ZendeskAdapter(ZendeskSettings(
        name="zd", type="zendesk", url=sim.url,
        auth={"email": "bot@example.com", "api_token": "t"}))
    adapter.size_pool(pool_size)
    together = Barrier(threads)

    def read(_n: int) -> None:
        together.wait(10)
        adapter.http.request("GET", "/api/v2/users/me.json", endpoint="users_me")

    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="urllib3"), \
                ThreadPoolExecutor(threads) as pool:
            for _round in range(2):
                list(pool.map(read, range(threads)))
    finally:
        adapter.close()
        sim.stop()
    return sum("Connection pool is full" in r.getMessage() for r in caplog.records)


def test_a_pool_sized_to_the_workers_keeps_every_connection(
        caplog: pytest.LogCaptureFixture) -> None:
    """The engine sizes each adapter's pool to its workers: with the old fixed 16, 24 workers
    closed (and, against a real helpdesk, re-handshook) eight connections a burst."""
    assert _concurrent_reads(pool_size=24, threads=24, caplog=caplog) == 0
    assert _concurrent_reads(pool_size=16, threads=24, caplog=caplog) > 0
