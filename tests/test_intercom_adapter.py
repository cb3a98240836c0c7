"""The Intercom adapter over real HTTP against its simulator (127.0.0.1), the adapter alone.

The engine end to end on the same simulator is in ``test_intercom_e2e.py``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import SeenCalls

from adapters.base import ChangePage, Role
from adapters.intercom import IntercomAdapter, IntercomSettings
from adapters.intercom.adapter import reset_wait
from adapters.intercom.simulator import IntercomSimulator
from adapters.registry import adapter_class
from adapters.simulation import Call, Fault
from connector.core.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
)

MakeAdapter = Callable[..., IntercomAdapter]
MARKER = "AI draft, Uppzy ref turn-7"


@pytest.fixture
def sim() -> Iterator[IntercomSimulator]:
    simulator = IntercomSimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter(sim: IntercomSimulator) -> Iterator[MakeAdapter]:
    made: list[IntercomAdapter] = []

    def build(**extra: Any) -> IntercomAdapter:
        settings = IntercomSettings.model_validate(
            {"name": "ic", "type": "intercom", **sim.adapter_config(), **extra})
        adapter = IntercomAdapter(settings)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


@pytest.fixture
def people(sim: IntercomSimulator) -> dict[str, str]:
    with sim.lock:
        return {"contact": sim.workspace.add_contact("Carol", "carol@example.org"),
                "agent": sim.workspace.add_admin("Agent Smith", "smith@example.com"),
                "fin": sim.workspace.add_admin("Fin", "fin@example.com", kind="bot")}


def opened(sim: IntercomSimulator, people: dict[str, str], text: str) -> str:
    with sim.lock:
        return sim.workspace.open_conversation(people["contact"], text, subject="Help")


def add(sim: IntercomSimulator, conversation: str, author: str, part_type: str,
        body: str | None) -> str:
    with sim.lock:
        return sim.workspace.add_part(conversation, author, part_type, body)


def walk(adapter: IntercomAdapter, cursor: str | None,
         start: datetime | None = None) -> tuple[list[ChangePage], str]:
    pages: list[ChangePage] = []
    start = start or datetime.now(UTC) - timedelta(minutes=10)
    while True:
        page = adapter.poll_changes(cursor, start)
        pages.append(page)
        cursor = page.cursor
        if not page.more:
            return pages, cursor
        assert len(pages) < 50, "the walk never ends"


def ids(pages: list[ChangePage]) -> list[str]:
    return [t.external_id for page in pages for t in page.tickets]


def search_bodies(sim: IntercomSimulator) -> SeenCalls[Call]:
    return SeenCalls(sim, lambda c: c.endpoint == "conversation_search", lambda c: c)


def raw_get(sim: IntercomSimulator, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(sim.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


# ----- settings, registry, check ------------------------------------------------------------
def test_settings_default_to_the_api_and_hide_the_token() -> None:
    settings = IntercomSettings.model_validate({
        "name": "ic", "type": "intercom", "auth": {"access_token": "tok-secret-123"},
        "admin_id": "42"})
    assert settings.url == "https://api.intercom.io" and settings.page_size == 150
    assert "tok-secret-123" not in repr(settings)
    for bad in ({"admin_id": "me"}, {"page_size": 151}, {"page_size": 0}):
        with pytest.raises(ValueError):
            IntercomSettings.model_validate({
                "name": "ic", "type": "intercom", "auth": {"access_token": "t"},
                "admin_id": "42", **bad})


def test_adapter_is_found_through_its_entry_point_and_says_it_writes_notes() -> None:
    cls = adapter_class("intercom")
    assert cls is IntercomAdapter
    assert not cls.capabilities.drafts and "no reply drafts" in (cls.capabilities.notes_because
                                                                  or "")
    assert cls.capabilities.webhook == "intercom-hmac-sha1"


def test_check_names_the_token_admin_and_the_note_admin(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    result = make_adapter().check()
    assert f"notes as admin {sim.bot_admin_id} (Uppzy AI)" in result
    with pytest.raises(PermissionDenied) as refused:
        make_adapter(admin_id="999999").check()
    assert "adapters[name=ic].admin_id" in str(refused.value)


def test_every_call_carries_the_bearer_token_and_the_pinned_version(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "Where is my parcel?")
    adapter = make_adapter()
    adapter.check()
    adapter.list_messages(adapter.get_ticket(conversation))
    walk(adapter, None)
    assert {c.status for c in sim.calls} == {200}
    token = {"Authorization": f"Bearer {sim.token}"}
    status, body = raw_get(sim, "/me", token)  # the simulator refuses an unpinned version
    assert status == 400 and body["errors"][0]["code"] == "intercom_version_invalid"
    status, body = raw_get(sim, "/me", {"Authorization": sim.token,
                                        "Intercom-Version": "2.11"})
    assert status == 401 and body["errors"][0]["code"] == "unauthorized"


def test_a_wrong_or_revoked_token_is_an_authentication_failure_without_the_token(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    adapter.check()
    sim.revoke()
    with pytest.raises(AuthenticationFailed) as failed:
        adapter.poll_changes(None, datetime.now(UTC))
    assert sim.token not in str(failed.value)
    assert sim.call_count("conversation_search") == 1  # no retry of refused credentials


def test_a_plan_without_api_access_is_a_refusal(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    sim.plan_restricted = True
    with pytest.raises(PermissionDenied) as refused:
        make_adapter().check()
    assert "Active subscription needed" in str(refused.value)
    assert sim.call_count("me") == 1


# ----- the change feed ----------------------------------------------------------------------
def test_search_asks_two_days_early_and_cuts_to_the_cursor_itself(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    """Intercom matches search dates by calendar day: asking from the exact second would miss
    the rest of today (the simulator truncates as documented for contact search)."""
    clock = [time.time() - 3 * 3600]
    with sim.lock:
        sim.workspace.clock = lambda: clock[0]
    old = opened(sim, people, "An old question")
    clock[0] += 3 * 3600
    new = opened(sim, people, "A new question")
    searches = search_bodies(sim)
    pages, _ = walk(make_adapter(), None, datetime.now(UTC) - timedelta(minutes=5))
    assert ids(pages) == [new] and old not in ids(pages)  # the old one is cut here, locally
    assert len(searches) == 1 and not searches[0].query  # the search is a POST body


def test_walk_follows_starting_after_and_the_next_walk_starts_before_the_last(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversations = [opened(sim, people, f"Question {i}") for i in range(5)]
    adapter = make_adapter(page_size=2)
    pages, cursor = walk(adapter, None)
    assert ids(pages) == conversations and len(pages) == 3
    assert [page.more for page in pages] == [True, True, False]
    add(sim, conversations[1], people["contact"], "comment", "More detail")
    later, _ = walk(adapter, cursor)
    assert conversations[1] in ids(later)  # within the overlap everything is seen again


def test_simulator_enforces_the_search_rules(sim: IntercomSimulator) -> None:
    headers = {"Authorization": f"Bearer {sim.token}", "Intercom-Version": "2.11",
               "Content-Type": "application/json"}

    def search(body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(sim.url + "/conversations/search", method="POST",
                                         data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    since = {"field": "updated_at", "operator": ">", "value": 1}
    assert search({"query": since, "pagination": {"per_page": 150}})[0] == 200
    for bad in ({"query": since, "pagination": {"per_page": 151}},
                {"query": {**since, "operator": ">="}},
                {"query": since, "pagination": {"per_page": 5, "starting_after": "nonsense"}},
                {"pagination": {"per_page": 5}}):
        status, body = search(bad)
        assert status == 400 and body["type"] == "error.list", bad


def test_conversation_fields_are_normalised(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "Hello")
    ticket = make_adapter().get_ticket(conversation)
    assert ticket.external_id == conversation and ticket.status == "open"
    assert not ticket.resolved and ticket.requester_id == people["contact"]
    assert ticket.requester_email == "carol@example.org" and ticket.channel == "conversation"
    with sim.lock:
        sim.workspace.set_state(conversation, people["agent"], "snoozed")
    snoozed = make_adapter().get_ticket(conversation)
    assert snoozed.status == "snoozed" and not snoozed.resolved
    with sim.lock:
        sim.workspace.set_state(conversation, people["agent"], "closed")
    assert make_adapter().get_ticket(conversation).resolved


def test_unknown_and_restricted_conversations(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    adapter = make_adapter()
    with pytest.raises(NotFound):
        adapter.get_ticket("123456789")
    conversation = opened(sim, people, "Secret")
    with sim.lock:
        sim.workspace.conversations[conversation].restricted = True
    with pytest.raises(PermissionDenied):
        adapter.get_ticket(conversation)
    with pytest.raises(NotFound):
        adapter.get_ticket("../admins/1")


# ----- messages -----------------------------------------------------------------------------
def test_roles_visibility_and_order(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "My order is late")
    parts = {
        "fin": add(sim, conversation, people["fin"], "comment", "Fin: have you tried tracking?"),
        "handover": add(sim, conversation, people["fin"], "assignment", None),
        "reply": add(sim, conversation, people["agent"], "comment", "Which order?"),
        "note": add(sim, conversation, people["agent"], "note", "VIP customer"),
        "customer": add(sim, conversation, people["contact"], "comment", "Order 7781"),
        "close": add(sim, conversation, people["agent"], "close", None),
    }
    messages = make_adapter().list_messages(make_adapter().get_ticket(conversation))
    by_id = {m.external_id: m for m in messages}
    first = messages[0]
    assert first.external_id.startswith("source-") and first.role is Role.CUSTOMER
    assert first.public and first.body == "My order is late"
    assert [m.external_id for m in messages[1:]] == list(parts.values())
    expected = {"fin": (Role.SYSTEM, True), "handover": (Role.SYSTEM, False),
                "reply": (Role.AGENT, True), "note": (Role.AGENT, False),
                "customer": (Role.CUSTOMER, True), "close": (Role.SYSTEM, False)}
    for name, (role, public) in expected.items():
        message = by_id[parts[name]]
        assert (message.role, message.public) == (role, public), name
    assert by_id[parts["customer"]].author_id == people["contact"]


def test_a_malformed_part_is_skipped_with_a_warning_naming_the_conversation(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str],
    caplog: pytest.LogCaptureFixture
) -> None:
    conversation = opened(sim, people, "private-words one")
    add(sim, conversation, people["contact"], "comment", "private-words two")
    add(sim, conversation, people["contact"], "comment", "private-words three")
    with sim.lock:
        sim.workspace.conversations[conversation].corrupt = True
    with caplog.at_level(logging.WARNING):
        messages = make_adapter().list_messages(make_adapter().get_ticket(conversation))
    assert [m.body for m in messages] == ["private-words one", "private-words two"]
    assert conversation in caplog.text and "private-words" not in caplog.text


# ----- notes --------------------------------------------------------------------------------
def test_post_draft_writes_an_admin_note_as_html_and_names_it(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "Hello")
    with sim.lock:
        sim.workspace.set_state(conversation, people["agent"], "closed")
    posted = make_adapter().post_draft(conversation, f"Line one\nLine two <b>\n\n— {MARKER}")
    assert posted.kind == "note"
    [body] = sim.parts_by(conversation, sim.bot_admin_id, "note")
    assert body == f"<p>Line one<br>Line two &lt;b&gt;</p><p>— {MARKER}</p>"
    with sim.lock:
        assert sim.workspace.conversations[conversation].parts[-1].id == posted.external_id
        assert sim.workspace.conversations[conversation].state == "closed"


def test_only_a_note_by_our_admin_is_taken_for_ours(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, f"I saw '{MARKER}' somewhere")
    add(sim, conversation, people["agent"], "note", f"Copied from the bot: {MARKER}")
    add(sim, conversation, people["agent"], "comment", f"Sent: {MARKER}")
    adapter = make_adapter()
    ticket = adapter.get_ticket(conversation)
    assert adapter.find_posted(ticket, MARKER) is None
    posted = adapter.post_draft(conversation, f"Answer\n\n— {MARKER}")
    assert adapter.find_posted(ticket, MARKER) == posted.external_id
    assert adapter.find_posted(ticket, MARKER + "0") is None


def test_an_unknown_admin_refuses_the_post_naming_the_key_and_unknown_conversations_are_404(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "Hello")
    with pytest.raises(PermissionDenied) as refused:
        make_adapter(admin_id="424242").post_draft(conversation, "Answer")
    assert "admin_id" in str(refused.value)
    with pytest.raises(NotFound):
        make_adapter().post_draft("987654321", "Answer")
    assert not sim.parts_by(conversation, sim.bot_admin_id, "note")


def test_a_note_is_not_repeated_after_a_server_error_but_is_after_429(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    conversation = opened(sim, people, "Hello")
    adapter = make_adapter()
    sim.add_fault(Fault(endpoint="conversation_reply", status=502, times=1))
    with pytest.raises(Exception):  # noqa: B017 - which error is the HTTP client's business
        adapter.post_draft(conversation, "Answer one")
    assert sim.call_count("conversation_reply") == 1
    sim.add_fault(Fault(endpoint="conversation_reply", status=429, retry_after=1, times=1))
    adapter.post_draft(conversation, "Answer two")
    assert sim.call_count("conversation_reply") == 3
    assert len(sim.parts_by(conversation, sim.bot_admin_id, "note")) == 1


# ----- rate limits --------------------------------------------------------------------------
def test_the_reset_time_is_read_on_intercoms_clock() -> None:
    date = "Sat, 05 Dec 2026 08:00:00 GMT"
    stamp = datetime(2026, 12, 5, 8, 0, tzinfo=UTC).timestamp()
    assert reset_wait({"X-RateLimit-Reset": str(int(stamp) + 7), "Date": date}) == 7.0
    assert reset_wait({"X-RateLimit-Reset": str(int(stamp) - 7), "Date": date}) == 0.0
    assert reset_wait({"X-RateLimit-Reset": "soon"}) is None and reset_wait({}) is None


def test_a_429_waits_until_the_reset_header_and_a_long_one_is_raised(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    sim.add_fault(Fault(status=429, retry_after=2, times=1))
    started = time.monotonic()
    adapter.check()
    assert time.monotonic() - started >= 1.0
    refused = [c for c in sim.calls if c.status == 429]
    assert len(refused) == 1
    sim.add_fault(Fault(status=429, retry_after=40, times=1))
    with pytest.raises(RateLimited) as limited:
        make_adapter().check()
    assert limited.value.retry_after is not None and 35 <= limited.value.retry_after <= 42


def test_the_simulator_counts_calls_in_ten_second_windows(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    sim.rate_limit = 3
    headers = {"Authorization": f"Bearer {sim.token}", "Intercom-Version": "2.11"}
    left = 10 - time.time() % 10
    if left < 3:  # the five calls below must fall into one window
        time.sleep(left + 0.05)
    answers = [raw_get(sim, "/me", headers)[0] for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    request = urllib.request.Request(sim.url + "/me", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    with refused.value as answer:
        assert answer.headers["Retry-After"] is None
        assert answer.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 10


# ----- backfill and webhooks ----------------------------------------------------------------
def test_backfill_lists_a_window(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str]
) -> None:
    clock = [time.time() - 7200]
    with sim.lock:
        sim.workspace.clock = lambda: clock[0]
    early = opened(sim, people, "Two hours ago")
    clock[0] += 3600
    middle = opened(sim, people, "One hour ago")
    clock[0] += 3600
    opened(sim, people, "Just now")
    now = datetime.now(UTC)
    listed = [t.external_id for page in make_adapter(page_size=1).list_tickets(
        now - timedelta(minutes=90), now - timedelta(minutes=30)) for t in page]
    assert listed == [middle] and early not in listed


def test_webhook_signature_and_conversation_ids(
    sim: IntercomSimulator, make_adapter: MakeAdapter
) -> None:
    secret = "intercom-client-secret-1"
    adapter = make_adapter(webhook_secret=secret)
    assert adapter.accepts_webhooks()
    body, headers = sim.signed_notification(secret, "1234")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert adapter.verify_webhook(lowered, body)
    assert adapter.webhook_ticket_ids(lowered, body) == ["1234"]
    assert not adapter.verify_webhook(lowered, body + b" ")
    forged, forged_headers = sim.signed_notification("another-secret-value", "1234")
    assert not adapter.verify_webhook({k.lower(): v for k, v in forged_headers.items()}, forged)
    ping, _ = sim.signed_notification(secret, "1", topic="ping")
    contact, _ = sim.signed_notification(secret, "1", topic="contact.user.created")
    assert adapter.webhook_ticket_ids({}, ping) == [] == adapter.webhook_ticket_ids({}, contact)


def test_secrets_never_reach_the_logs(
    sim: IntercomSimulator, make_adapter: MakeAdapter, people: dict[str, str],
    caplog: pytest.LogCaptureFixture
) -> None:
    conversation = opened(sim, people, "Hello")
    with caplog.at_level(logging.DEBUG):
        adapter = make_adapter()
        adapter.check()
        adapter.post_draft(conversation, "Answer")
        sim.revoke()
        with pytest.raises(AuthenticationFailed):
            adapter.check()
    assert caplog.text and sim.token not in caplog.text
