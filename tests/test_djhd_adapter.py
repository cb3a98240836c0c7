"""The django-helpdesk adapter against a real django-helpdesk 2.6.1 (see ``tests/djhd_fixture.py``).

One server serves the whole session, so every test makes its own tickets with unique subjects
and starts polling from a cursor taken just before it acts.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from djhd_fixture import AGENT, CUSTOMER, STAFFER, DjhdServer, djhd_server_module
from pydantic import ValidationError

from adapters.base import Message, Role, carries_marker
from adapters.djhd import DjhdAdapter, DjhdSettings
from adapters.djhd.feed import Cursor, first_after
from adapters.djhd.followups import ZWSP, defuse
from adapters.registry import adapter_class
from connector.core.errors import AuthenticationFailed, NotFound, PermissionDenied

MakeAdapter = Callable[..., DjhdAdapter]
MARKER = "AI draft, Uppzy ref "
_serial = itertools.count(1)


def subject(what: str) -> str:
    return f"{what} #{next(_serial)}-{datetime.now(UTC):%H%M%S%f}"


@pytest.fixture
def make_adapter(djhd_server: DjhdServer) -> Iterator[MakeAdapter]:
    adapters: list[DjhdAdapter] = []

    def build(**overrides: Any) -> DjhdAdapter:
        data = {"name": "hd", "type": "django_helpdesk", "url": djhd_server.url,
                "auth": {"token": djhd_server.agent_token}, "overlap": "2s",
                "sweep_interval": "0s", **overrides}
        adapter = DjhdAdapter(DjhdSettings.model_validate(data))
        adapters.append(adapter)
        return adapter

    yield build
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: MakeAdapter) -> DjhdAdapter:
    return make_adapter()


def drain(adapter: DjhdAdapter, cursor: str | None) -> tuple[list[str], str]:
    """Every page from ``cursor``: the ticket ids reported, and the cursor after the last."""
    reported: list[str] = []
    for _ in range(200):
        page = adapter.poll_changes(cursor, datetime.now(UTC) - timedelta(seconds=1))
        reported += [t.external_id for t in page.tickets]
        cursor = page.cursor
        if not page.more:
            return reported, cursor
    raise AssertionError("the change feed never ended")


def now_cursor(adapter: DjhdAdapter) -> str:
    """A drained cursor: what a running daemon holds before the test acts."""
    return drain(adapter, None)[1]


def by_body(messages: list[Message], text: str) -> Message:
    found = [m for m in messages if text in m.body]
    assert len(found) == 1, [(m.role, m.body[:40]) for m in messages]
    return found[0]


# ----- settings and check ----------------------------------------------------------------------
def test_registered_and_settings_shape() -> None:
    assert adapter_class("django_helpdesk") is DjhdAdapter
    settings = DjhdSettings.model_validate({
        "name": "hd", "type": "django_helpdesk", "url": "https://desk.example.com/helpdesk/",
        "auth": {"username": "bot", "password": "pw-secret-1234"}, "queues": [1, 2],
    })
    assert settings.url == "https://desk.example.com/helpdesk"
    copied = settings.model_copy(update={"url": "x"}).model_validate(
        {**settings.model_dump(), "auth": {"token": "t"}, "url": "https://d.example.com/api/"})
    assert copied.url == "https://d.example.com"
    assert settings.resolved_statuses == [3, 4, 5] and settings.open_statuses == [1, 2]
    assert "pw-secret-1234" not in repr(settings) and "pw-secret-1234" not in str(
        settings.model_dump())
    with pytest.raises(ValidationError, match="both open and resolved"):
        DjhdSettings.model_validate({"name": "hd", "type": "django_helpdesk",
                                     "url": "https://d.example.com", "auth": {"token": "t"},
                                     "open_statuses": [1, 3]})
    with pytest.raises(ValidationError):
        DjhdSettings.model_validate({"name": "hd", "type": "django_helpdesk",
                                     "url": "https://d.example.com", "auth": {"token": "t"},
                                     "queues": []})


def test_check_with_token_and_with_password(make_adapter: MakeAdapter) -> None:
    assert make_adapter().check().startswith("django-helpdesk API as the token's user (")
    by_password = make_adapter(auth={"username": AGENT.name, "password": AGENT.password})
    assert by_password.check().startswith("django-helpdesk API as agent (")


def test_refused_credentials_are_authentication_failed(
    make_adapter: MakeAdapter, djhd_server: DjhdServer
) -> None:
    """DRF answers them with 403 (session authentication first); the adapter tells them from
    a user who is not staff by DRF's text, and never prints the secret."""
    with pytest.raises(AuthenticationFailed, match=r"adapters\[name=hd\]\.auth"):
        make_adapter(auth={"username": AGENT.name, "password": "wrong-password"}).check()
    forged = djhd_server.agent_token[:-4] + "0000"
    with pytest.raises(AuthenticationFailed) as caught:
        make_adapter(auth={"token": forged}).poll_changes(None, datetime.now(UTC))
    assert forged not in str(caught.value)


def test_a_customer_account_is_refused_by_check_naming_the_key(make_adapter: MakeAdapter) -> None:
    customer = make_adapter(auth={"username": CUSTOMER.name, "password": CUSTOMER.password})
    customer.settings.locate("adapters[2]")
    with pytest.raises(PermissionDenied, match=r"staff users only.*adapters\[2\]\.auth"):
        customer.check()


# ----- conversation ----------------------------------------------------------------------------
def test_roles_visibility_and_our_note(
    adapter: DjhdAdapter, djhd_server: DjhdServer
) -> None:
    """Web opening and mail reply: customer; staff reply: agent, public; staff note: agent,
    private; hold and resolve without text: system; our note: agent, private, ours."""
    ticket = djhd_server.submit_ticket(subject("Roles"), "My invoice is wrong.")
    djhd_server.staff_reply(ticket, "Which invoice?")
    djhd_server.staff_note(ticket, "VIP customer.")
    djhd_server.customer_reply(ticket, "Invoice 42, thanks.")
    djhd_server.hold(ticket)
    posted = adapter.post_draft(ticket, f"Try this.\n\n— {MARKER}djhd_1")
    djhd_server.set_status(ticket, 3)
    messages = adapter.list_messages(adapter.get_ticket(ticket))
    expected = [("My invoice is wrong.", Role.CUSTOMER, True), ("Which invoice?", Role.AGENT, True),
                ("VIP customer.", Role.AGENT, False), ("Invoice 42", Role.CUSTOMER, True),
                ("Try this.", Role.AGENT, False)]
    for text, role, public in expected:
        message = by_body(messages, text)
        assert (message.role, message.public) == (role, public), (text, message)
    assert [m.role for m in messages].count(Role.SYSTEM) == 2  # hold, resolve
    ours = by_body(messages, "Try this.")
    assert ours.external_id == posted.external_id and posted.kind == "note"
    assert carries_marker(ours, f"{MARKER}djhd_1")
    assert adapter.find_posted(adapter.get_ticket(ticket), f"{MARKER}djhd_1") == ours.external_id
    times = [m.created_at for m in messages]
    assert times == sorted(times)


def test_a_logged_in_customer_opening_is_the_customers(
    adapter: DjhdAdapter, djhd_server: DjhdServer
) -> None:
    """The public form records a logged-in customer as the follow-up's user; the opening is
    still the customer's question (it repeats the ticket's description)."""
    browser = djhd_server.browser(CUSTOMER)
    form = browser.get(f"{djhd_server.url}/tickets/submit/", timeout=30)
    assert form.status_code == 200
    title = subject("Logged in")
    resp = browser.post(f"{djhd_server.url}/tickets/submit/", data={
        "csrfmiddlewaretoken": browser.cookies.get("csrftoken", ""), "title": title,
        "queue": str(djhd_server.queue_id("support")), "body": "Where is my parcel?",
        "submitter_email": CUSTOMER.email, "priority": "3",
    }, headers={"Referer": f"{djhd_server.url}/tickets/submit/"}, allow_redirects=False,
        timeout=30)
    assert resp.status_code == 302, resp.text[:300]
    ticket = resp.headers["Location"].split("ticket=")[1].split("&")[0].rsplit("-", 1)[1]
    [opening] = djhd_server.followups(ticket)
    assert opening["user"] is not None  # recorded, although not staff
    [message] = adapter.list_messages(adapter.get_ticket(ticket))
    assert message.role is Role.CUSTOMER and message.public


def test_our_note_is_stored_as_written_and_changes_nothing_else(
    adapter: DjhdAdapter, djhd_server: DjhdServer
) -> None:
    """Template syntax and ``#<id>`` survive (django-helpdesk would render the one and turn the
    other into a back-link note on that ticket); the title and status stay; the customer
    never sees the note."""
    other = djhd_server.submit_ticket(subject("Other"), "Unrelated.")
    title = subject("Template")
    ticket = djhd_server.submit_ticket(title, "How do I write {{ name }}?")
    text = (f"Write {{{{ name }}}} or {{% now %}}, see step #{other}.\nLine two.\n\n"
            f"— {MARKER}djhd_2")
    adapter.post_draft(ticket, text)
    [*_, note] = djhd_server.followups(ticket)
    assert note["comment"].replace(ZWSP, "") == text and note["public"] is False
    data = djhd_server.ticket(ticket)
    assert data["title"] == title and data["status"] == 1
    assert [f["title"] for f in djhd_server.followups(other)] == ["Ticket Opened Via Web"]
    assert MARKER + "djhd_2" not in djhd_server.customer_view(ticket)
    assert "How do I write" in djhd_server.customer_view(ticket)


def test_defuse_is_invisible_and_idempotent_for_plain_text() -> None:
    assert defuse("Plain answer.\n— ref 1") == "Plain answer.\n— ref 1"
    assert defuse("{{x}} #12 {# c #}").replace(ZWSP, "") == "{{x}} #12 {# c #}"


def test_missing_ticket_is_not_found(adapter: DjhdAdapter) -> None:
    for call in (lambda: adapter.get_ticket("999999"), lambda: adapter.post_draft("999999", "x"),
                 lambda: adapter.get_ticket("abc")):
        with pytest.raises(NotFound):
            call()


# ----- change feed -----------------------------------------------------------------------------
def test_feed_reports_every_change_across_small_pages(
    make_adapter: MakeAdapter, djhd_server: DjhdServer
) -> None:
    adapter = make_adapter(page_size=2)
    cursor = now_cursor(adapter)
    tickets = [djhd_server.submit_ticket(subject(f"Feed {i}"), f"Question {i}") for i in range(5)]
    djhd_server.staff_note(tickets[0], "Looking.")
    reported, cursor = drain(adapter, cursor)
    assert set(tickets) <= set(reported)
    assert drain(adapter, cursor)[0] == []  # nothing new: nothing reported
    djhd_server.customer_reply(tickets[3], "More details.")
    assert drain(adapter, cursor)[0] == [tickets[3]]


def test_a_late_committed_follow_up_is_found_within_the_overlap(
    make_adapter: MakeAdapter, djhd_server: DjhdServer
) -> None:
    """A follow-up dated before one already read, committed after it, is still reported."""
    adapter = make_adapter(overlap="30s")
    early, late = (djhd_server.submit_ticket(subject(w), w) for w in ("Early", "Late"))
    cursor = now_cursor(adapter)
    dated = datetime.now(UTC)
    djhd_server.staff_note(late, "Newest.")
    reported, cursor = drain(adapter, cursor)
    assert reported == [late]
    djhd_server.late_followup(early, "Dated before the newest.", dated=dated)
    assert drain(adapter, cursor)[0] == [early]


def test_status_changes_without_follow_up_come_from_the_sweep(
    make_adapter: MakeAdapter, djhd_server: DjhdServer
) -> None:
    """Kanban/API status changes and deletions leave no follow-up: the sweep reports them,
    and only when it is due."""
    ticket, doomed = (djhd_server.submit_ticket(subject(w), w) for w in ("Kanban", "Doomed"))
    hourly = make_adapter(sweep_interval="1h")
    cursor = now_cursor(hourly)
    djhd_server.patch_status(ticket, 3)
    assert drain(hourly, cursor)[0] == []  # the next sweep is an hour away
    eager = make_adapter()
    cursor = now_cursor(eager)
    djhd_server.patch_status(ticket, 2)  # reopened on the board
    djhd_server.delete(doomed)
    pages = [eager.poll_changes(cursor, datetime.now(UTC))]
    while pages[-1].more:
        pages.append(eager.poll_changes(pages[-1].cursor, datetime.now(UTC)))
    reported = {t.external_id: t for page in pages for t in page.tickets}
    assert reported[ticket].status == "Reopened" and not reported[ticket].resolved
    assert reported[doomed].resolved and reported[doomed].status == "gone"


def test_queue_filter(make_adapter: MakeAdapter, djhd_server: DjhdServer) -> None:
    adapter = make_adapter(queues=[djhd_server.queue_id("support")])
    cursor = now_cursor(adapter)
    ours = djhd_server.submit_ticket(subject("Support"), "Help")
    theirs = djhd_server.submit_ticket(subject("Sales"), "Buy", queue="sales")
    reported = drain(adapter, cursor)[0]
    assert ours in reported and theirs not in reported


def test_unreadable_cursor_starts_from_start_from(
    adapter: DjhdAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        page = adapter.poll_changes("not-a-cursor", datetime.now(UTC))
    assert Cursor.load(page.cursor) is not None
    assert "unreadable cursor" in caplog.text


def test_backfill_lists_tickets_by_follow_up_date(
    adapter: DjhdAdapter, djhd_server: DjhdServer
) -> None:
    before = datetime.now(UTC)
    tickets = [djhd_server.submit_ticket(subject(f"Backfill {i}"), "Old question")
               for i in range(3)]
    middle = datetime.now(UTC)
    later = djhd_server.submit_ticket(subject("After"), "Newer")
    listed = [t.external_id for page in adapter.list_tickets(before, middle) for t in page]
    assert listed == tickets
    assert later in [t.external_id for page in adapter.list_tickets(middle, None) for t in page]


def test_first_after_bisects_with_few_probes() -> None:
    """The feed's search over an in-memory list shaped like the API's answers."""
    dates = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(1000)]
    items = [{"id": i + 1, "date": d.isoformat()} for i, d in enumerate(dates)]
    calls: list[tuple[int, int | str]] = []

    def probe(size: int, page: int | str) -> dict[str, Any]:
        calls.append((size, page))
        number = len(items) if page == "last" else int(page)
        return {"count": len(items), "results": items[(number - 1) * size:number * size]}

    floor = int(dates[990].timestamp()) * 1_000_000
    assert first_after(probe, floor, inclusive=False) == (991, 1000)
    assert len(calls) < 12
    assert first_after(probe, floor, inclusive=True)[0] == 990
    assert first_after(probe, 0, inclusive=False) == (0, 1000)
    assert first_after(probe, 10**18, inclusive=False) == (1000, 1000)


def test_server_helpers_know_the_seed() -> None:
    assert STAFFER.staff and not CUSTOMER.staff
    assert djhd_server_module.VERSION == "2.6.1"
