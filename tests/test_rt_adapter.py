"""The RT adapter against a real Request Tracker 5 (see ``tests/rt_fixture.py``).

One RT serves the whole session, so every test makes its own tickets with unique subjects and
starts polling from a cursor taken just before it acts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from rt_fixture import AGENT, CUSTOMER, RTServer

from adapters.base import Message, Role
from adapters.registry import adapter_class
from adapters.rt import RTAdapter, RTSettings
from adapters.rt.adapter import POLL_TYPES, check_messages
from connector.core.errors import (
    AuthenticationFailed,
    BadRequest,
    ConfigError,
    NotFound,
    PermissionDenied,
)

MakeAdapter = Callable[..., RTAdapter]
_serial = itertools.count(1)


def subject(what: str) -> str:
    return f"{what} #{next(_serial)}-{datetime.now(UTC):%H%M%S%f}"


@pytest.fixture
def make_adapter(rt_server: RTServer) -> Iterator[MakeAdapter]:
    adapters: list[RTAdapter] = []

    def build(**overrides: Any) -> RTAdapter:
        data = {"name": "rt", "type": "rt", "url": rt_server.url,
                "auth": {"token": rt_server.agent_token}, **overrides}
        adapter = RTAdapter(RTSettings.model_validate(data))
        adapters.append(adapter)
        return adapter

    yield build
    for adapter in adapters:
        adapter.close()


@pytest.fixture
def adapter(make_adapter: MakeAdapter) -> RTAdapter:
    return make_adapter()


def now_cursor(adapter: RTAdapter) -> str:
    """The cursor a first poll hands out when nothing happened after ``start_from``."""
    page = adapter.poll_changes(None, datetime.now(UTC) + timedelta(days=1))
    assert page.tickets == [] and not page.more
    return page.cursor


def drain(adapter: RTAdapter, cursor: str) -> list[tuple[str, list[str]]]:
    """Every page after ``cursor``: (cursor after the page, ticket ids on it)."""
    pages = []
    for _ in range(100):
        page = adapter.poll_changes(cursor, datetime.now(UTC))
        pages.append((page.cursor, [t.external_id for t in page.tickets]))
        assert int(page.cursor) >= int(cursor)
        cursor = page.cursor
        if not page.more:
            return pages
    raise AssertionError("the change feed never ended")


def by_body(messages: list[Message], text: str) -> Message:
    found = [m for m in messages if text in m.body]
    assert len(found) == 1, [(m.role, m.body[:40]) for m in messages]
    return found[0]


# ----- settings and check ----------------------------------------------------------------------
def test_registered_and_settings_shape() -> None:
    assert adapter_class("rt") is RTAdapter
    settings = RTSettings.model_validate({
        "name": "rt", "type": "rt", "url": "https://rt.example.com/REST/2.0/",
        "auth": {"username": "bot", "password": "pw-1234"}, "queues": ["Support"],
    })
    assert settings.url == "https://rt.example.com"
    assert settings.inactive_statuses == ["resolved", "rejected", "deleted"]
    with pytest.raises(ValidationError, match="username"):
        RTSettings.model_validate({"name": "rt", "type": "rt", "url": "https://rt.example.com",
                                   "auth": {"token": "t", "username": "x"}})
    with pytest.raises(ValidationError):
        RTSettings.model_validate({"name": "rt", "type": "rt", "url": "https://rt.example.com",
                                   "auth": {"token": "t"}, "queues": []})


def test_check_with_token_and_with_password(make_adapter: MakeAdapter) -> None:
    by_token = make_adapter().check()
    by_password = make_adapter(auth={"username": AGENT.name, "password": AGENT.password},
                               queues=["Support", "Sales"]).check()
    assert by_token.startswith("RT 5.") and by_token.endswith(" as agent")
    assert by_password == by_token


def test_bad_credentials_are_401(make_adapter: MakeAdapter, rt_server: RTServer) -> None:
    with pytest.raises(AuthenticationFailed):
        make_adapter(auth={"username": AGENT.name, "password": "wrong-password"}).check()
    forged = rt_server.agent_token[:-4] + "0000"
    with pytest.raises(AuthenticationFailed) as caught:
        make_adapter(auth={"token": forged}).check()
    assert forged not in str(caught.value)


def test_check_names_an_unknown_queue(make_adapter: MakeAdapter) -> None:
    with pytest.raises(ConfigError, match=r"queues\[1\].*'Nope'"):
        make_adapter(queues=["Support", "Nope"]).check()


# ----- change feed -----------------------------------------------------------------------------
def test_poll_cursor_is_exact_across_small_pages(
    make_adapter: MakeAdapter, rt_server: RTServer
) -> None:
    """With one transaction per page, the pages are exactly RT's transactions in id order."""
    support = make_adapter(queues=["Support"], page_size=1)
    everything = make_adapter(page_size=2)
    start = now_cursor(support)
    assert now_cursor(everything) == start

    first = rt_server.create_ticket(subject("Printer"), "My printer is on fire.")
    second = rt_server.create_ticket(subject("Login"), "I cannot log in.")
    sales = rt_server.create_ticket(subject("Quote"), "A quote, please.", user=AGENT,
                                    queue="Sales")
    rt_server.staff_reply(first, "Please unplug it.")  # also a Status new -> open by RT_System
    rt_server.staff_comment(second, "Probably the SSO outage.")
    rt_server.customer_reply(first, "Unplugged, still smoking.")
    rt_server.mail_reply(second, "Still cannot log in.")
    rt_server.staff_reply(sales, "Quote attached.")

    expected = sorted(
        (int(txn["id"]), ticket)
        for ticket in (first, second)
        for txn in rt_server.history(ticket, user=AGENT)
        if txn["Type"] in POLL_TYPES and int(txn["id"]) > int(start)
    )
    pages = drain(support, start)
    # A full page may have a successor, so the feed ends with one empty page.
    final = str(expected[-1][0])
    assert pages == [(str(txn), [ticket]) for txn, ticket in expected] + [(final, [])]
    again = support.poll_changes(final, datetime.now(UTC))
    assert again.tickets == [] and again.cursor == final and not again.more

    seen = [ticket for _, ids in drain(everything, start) for ticket in ids]
    assert set(seen) == {first, second, sales}


def test_first_poll_starts_at_start_from(adapter: RTAdapter, rt_server: RTServer) -> None:
    ticket = rt_server.create_ticket(subject("Fresh"), "Hello?")
    page = adapter.poll_changes(None, datetime.now(UTC) - timedelta(minutes=5))
    while page.more and ticket not in [t.external_id for t in page.tickets]:
        page = adapter.poll_changes(page.cursor, datetime.now(UTC))
    changed = {t.external_id: t for t in page.tickets}
    assert changed[ticket].status == "new" and not changed[ticket].resolved
    assert changed[ticket].requester_email == CUSTOMER.email


# ----- conversation ----------------------------------------------------------------------------
def test_conversation_roles_visibility_and_bodies(
    adapter: RTAdapter, rt_server: RTServer
) -> None:
    ticket_id = rt_server.create_ticket(subject("Printer on fire"), "Help, my printer burns.")
    rt_server.staff_reply(ticket_id, "Please unplug it.")
    rt_server.staff_comment(ticket_id, "Internal: customer is a VIP.")
    rt_server.customer_reply(ticket_id, "Done, it is still smoking.")
    rt_server.mail_reply(ticket_id, "By mail: now the desk is on fire too.")
    rt_server.mail_reply(
        ticket_id, "<p>Photos <b>attached</b>.</p><ul><li>desk</li><li>printer</li></ul>",
        html=True,
    )

    ticket = adapter.get_ticket(ticket_id)
    messages = adapter.list_messages(ticket)

    conversation = [(m.role, m.public, m.author_id, m.body) for m in messages
                    if m.role != Role.SYSTEM]
    assert conversation == [
        (Role.CUSTOMER, True, "customer", "Help, my printer burns."),
        (Role.AGENT, True, "agent", "Please unplug it."),
        (Role.AGENT, False, "agent", "Internal: customer is a VIP."),
        (Role.CUSTOMER, True, "customer", "Done, it is still smoking."),
        (Role.CUSTOMER, True, "customer", "By mail: now the desk is on fire too."),
        (Role.CUSTOMER, True, "customer", "Photos attached.\n\n  * desk\n  * printer"),
    ]
    autoreply = by_body(messages, "automatically generated")
    assert (autoreply.role, autoreply.public, autoreply.author_id) == \
        (Role.SYSTEM, False, "RT_System")
    status = by_body(messages, "Status: new -> open")
    assert (status.role, status.public) == (Role.SYSTEM, True)
    assert [int(m.external_id) for m in messages] == sorted(int(m.external_id) for m in messages)
    assert all(m.ticket_id == ticket_id and m.external_id.isdigit() for m in messages)


def test_unknown_sender_by_mail_is_a_customer(adapter: RTAdapter, rt_server: RTServer) -> None:
    ticket_id = rt_server.mail_in("The VPN is down.", sender="Bob <bob@example.org>",
                                  subject=subject("VPN down"))
    ticket = adapter.get_ticket(ticket_id)
    assert (ticket.requester_id, ticket.requester_email) == ("bob@example.org", "bob@example.org")
    first = adapter.list_messages(ticket)[0]
    assert (first.role, first.public, first.body) == (Role.CUSTOMER, True, "The VPN is down.")


def test_html_body_over_rest_is_clean_text(adapter: RTAdapter, rt_server: RTServer) -> None:
    ticket_id = rt_server.create_ticket(
        subject("HTML"), "<div>Order <b>#1234</b> never&nbsp;arrived.<br>Where is it?</div>",
        content_type="text/html",
    )
    first = adapter.list_messages(adapter.get_ticket(ticket_id))[0]
    assert first.body == "Order #1234 never arrived.\nWhere is it?"


# ----- draft (comment) -------------------------------------------------------------------------
def test_draft_is_a_comment_the_customer_cannot_see(
    adapter: RTAdapter, rt_server: RTServer
) -> None:
    ticket_id = rt_server.create_ticket(subject("Refund"), "I want my money back.")
    text = "Suggested answer: refunds take 5 days.\n\n[uppzy-draft:abc123]"

    posted = adapter.post_draft(ticket_id, text)

    assert posted.kind == "note" and posted.external_id.isdigit()
    ticket = adapter.get_ticket(ticket_id)
    ours = [m for m in adapter.list_messages(ticket) if m.external_id == posted.external_id]
    assert [(m.role, m.public, m.author_id, m.body) for m in ours] == \
        [(Role.AGENT, False, "agent", text)]
    assert adapter.find_posted(ticket, "[uppzy-draft:abc123]") == posted.external_id
    customer_view = rt_server.history(ticket_id)
    assert posted.external_id not in [t["id"] for t in customer_view]
    assert not any("uppzy-draft" in t["Content"] for t in customer_view)
    assert "Comment" not in [t["Type"] for t in customer_view]
    assert "Create" in [t["Type"] for t in customer_view]  # the customer does see the ticket


def test_draft_by_an_unprivileged_user_is_permission_denied(
    make_adapter: MakeAdapter, rt_server: RTServer
) -> None:
    ticket_id = rt_server.create_ticket(subject("Mine"), "My own ticket.")
    customer = make_adapter(auth={"username": CUSTOMER.name, "password": CUSTOMER.password})
    with pytest.raises(PermissionDenied):
        customer.post_draft(ticket_id, "not allowed")


# ----- status ----------------------------------------------------------------------------------
def test_resolved_and_reopened(make_adapter: MakeAdapter, rt_server: RTServer) -> None:
    adapter = make_adapter()
    stalled_ends = make_adapter(inactive_statuses=["resolved", "stalled"])
    ticket_id = rt_server.create_ticket(subject("Resolve me"), "Please close this.")
    start = now_cursor(adapter)

    rt_server.staff_reply(ticket_id, "Done.", status="resolved")
    resolved = adapter.get_ticket(ticket_id)
    assert (resolved.status, resolved.resolved) == ("resolved", True)
    assert ticket_id in [i for _, ids in drain(adapter, start) for i in ids]

    rt_server.mail_reply(ticket_id, "It broke again.")  # RT reopens on a requestor's reply
    reopened = adapter.get_ticket(ticket_id)
    assert (reopened.status, reopened.resolved) == ("open", False)
    last = adapter.list_messages(reopened)[-1]
    assert (last.role, last.body) == (Role.SYSTEM, "Status: resolved -> open")

    rt_server.set_status(ticket_id, "stalled")
    assert not adapter.get_ticket(ticket_id).resolved
    assert stalled_ends.get_ticket(ticket_id).resolved


def test_refusal_inside_a_200_is_detected(rt_server: RTServer) -> None:
    ticket_id = rt_server.create_ticket(subject("Bogus"), "Set a bogus status.")
    messages = rt_server.set_status(ticket_id, "bogus")  # RT answers this with HTTP 200
    with pytest.raises(BadRequest, match="isn't a valid status") as caught:
        check_messages(messages, "rt update")
    assert caught.value.status == 200
    assert rt_server.ticket(ticket_id)["Status"] == "new"
    assert check_messages(rt_server.set_status(ticket_id, "open"), "rt update") == \
        [f"Ticket {ticket_id}: Status changed from 'new' to 'open'"]
    with pytest.raises(PermissionDenied):
        check_messages([f"Ticket {ticket_id}: Permission Denied"], "rt update")


def test_missing_ticket_is_not_found(adapter: RTAdapter) -> None:
    with pytest.raises(NotFound):
        adapter.get_ticket("999999")
    with pytest.raises(NotFound):
        adapter.post_draft("999999", "hello")
