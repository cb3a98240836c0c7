"""Scenarios that call the adapter directly: paging, roles, text, posting, statuses, limits and
failures.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from functools import partial

from adapters.base import Adapter, ChangePage, Role
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from connector.testing.helpdesk_driver import PAGE_SIZE, REMOVALS, HelpdeskDriver
from connector.testing.scenarios.support import (
    MARKER_PREFIX,
    LogCapture,
    as_ticket,
    baseline,
    build_adapter,
    containing,
    drain,
    expect_error,
    last_report,
    only,
    open_adapter,
    recent,
    reported,
    unique,
)


def changes_across_pages(driver: HelpdeskDriver) -> None:
    """Several pages, a change and a new ticket while paging, a restart from a mid cursor:
    every ticket is reported, and reported again after it changed."""
    with open_adapter(driver, page_size=PAGE_SIZE) as adapter:
        start = baseline(adapter, driver)
        tickets = [driver.create_ticket(unique(f"Question {i}")) for i in range(5)]
        driver.settle()
        late: dict[str, str] = {}

        def change_while_paging(number: int, page: ChangePage) -> None:
            if number == 0:
                late["changed"] = tickets[0]
                driver.customer_reply(tickets[0], unique("A change while paging"))
                late["new"] = driver.create_ticket(unique("A ticket born while paging"))
                late["cursor"] = page.cursor
                driver.settle()

        pages, cursor = drain(adapter, start, change_while_paging)
        first_page = reported(pages[:1])
        seen = reported(pages)
        missing = [t for t in tickets if t not in seen]
        assert not missing, f"tickets never reported: {missing} (pages: {len(pages)})"
        after_change = reported(pages[1:]) + reported(drain(adapter, cursor)[0])
        for key in ("changed", "new"):
            assert late[key] in after_change, f"the {key} ticket {late[key]} was not reported"
    # A daemon that stopped after the first page resumes from its cursor with a new adapter.
    with open_adapter(driver, page_size=PAGE_SIZE) as resumed:
        again = reported(drain(resumed, late["cursor"])[0])
    lost = [t for t in [*tickets, late["new"]] if t not in first_page + again]
    assert not lost, f"resuming from the first page's cursor lost {lost}"


def roles_and_visibility(driver: HelpdeskDriver) -> None:
    """Customer, agent, note, automation and our own post: roles, visibility and order."""
    question, answer = unique("Customer asks"), unique("Agent answers")
    note, event, follow_up = unique("Agent notes"), unique("Automation says"), unique("Again")
    ticket_id = driver.create_ticket(question)
    driver.agent_reply(ticket_id, answer)
    driver.internal_note(ticket_id, note)
    driver.system_event(ticket_id, event)
    driver.customer_reply(ticket_id, follow_up)
    with open_adapter(driver) as adapter:
        ref = f"conf_{uuid.uuid4().hex[:12]}"
        posted = adapter.post_draft(ticket_id, f"Our suggestion.\n\n— {MARKER_PREFIX}{ref}")
        messages = adapter.list_messages(adapter.get_ticket(ticket_id))
    assert all(m.ticket_id == ticket_id for m in messages), "messages name another ticket"
    ids = [m.external_id for m in messages]
    assert len(ids) == len(set(ids)), f"message ids repeat: {ids}"
    times = [m.created_at for m in messages]
    assert times == sorted(times), "messages are not oldest first"
    expected = [(question, Role.CUSTOMER, True), (answer, Role.AGENT, True),
                (note, Role.AGENT, False), (follow_up, Role.CUSTOMER, True)]
    for text, role, public in expected:
        message = only(messages, text)
        assert (message.role, message.public) == (role, public), (
            f"{text!r} is {message.role.value}/{'public' if message.public else 'private'}, "
            f"expected {role.value}/{'public' if public else 'private'}"
        )
    order = [ids.index(only(messages, text).external_id) for text, _, _ in expected]
    assert order == sorted(order), "the conversation is out of order"
    for message in containing(messages, event):
        assert message.role is Role.SYSTEM, f"the automation's message is {message.role.value}"
    starters = [m for m in messages if m.role is Role.CUSTOMER and m.public]
    assert {m.external_id for m in starters} == {
        only(messages, question).external_id, only(messages, follow_up).external_id
    }, f"only the customer's messages may start a turn, got {[m.body[:60] for m in starters]}"
    for message in containing(messages, ref):
        assert message.external_id == posted.external_id, (
            f"our post is listed as {message.external_id}, post_draft said {posted.external_id}"
        )


def first_message(driver: HelpdeskDriver) -> None:
    """Wherever the vendor keeps the opening message, it is the first customer message, once."""
    for channel in driver.channels:
        question, follow_up = unique(f"Opening via {channel}"), unique("Follow-up")
        ticket_id = driver.create_ticket(question, channel=channel)
        driver.customer_reply(ticket_id, follow_up)
        with open_adapter(driver) as adapter:
            messages = adapter.list_messages(adapter.get_ticket(ticket_id))
        customer = [m for m in messages if m.role is Role.CUSTOMER and m.public]
        opening = only(messages, question)
        assert customer and customer[0].external_id == opening.external_id, (
            f"{channel}: the opening message is not the first customer message"
        )
        assert only(messages, follow_up).external_id == customer[-1].external_id, (
            f"{channel}: the follow-up is not the last customer message"
        )


HTML_OPENING = (
    '<div dir="ltr"><p>My <b>printer</b> &amp; scanner stopped.</p>'
    "<ul><li>model {token}</li><li>bought in May</li></ul></div>"
)
HTML_REPLY = (
    '<div dir="ltr"><p>It still fails with error {token}.</p>'
    "<p>Kind regards,<br>Carol Customer<br>Acme Inc, +1 555 0100</p></div>"
    '<div class="gmail_quote"><div class="gmail_attr">On Mon, Jan 6, 2025 at 10:00 AM '
    "Support &lt;support@example.com&gt; wrote:<br></div>"
    '<blockquote class="gmail_quote">Have you tried turning it off and on?<br>'
    "Old history line<br>— " + MARKER_PREFIX + "req_quoted</blockquote></div>"
)
TEXT_REPLY = (
    "Still broken after the update {token}.\n\n-- \nCarol Customer\nAcme Inc\n\n"
    "On Tue, Jan 7, 2025 at 9:00 AM Support <support@example.com> wrote:\n"
    "> Please update the driver.\n> " + MARKER_PREFIX + "req_quoted2\n"
)


def html_becomes_clean_text(driver: HelpdeskDriver) -> None:
    """HTML turns into plain text; quoted history (our old marker included) and signatures go."""
    tokens = [uuid.uuid4().hex[:8] for _ in range(3)]
    ticket_id = driver.create_ticket(HTML_OPENING.format(token=tokens[0]), html=True)
    driver.customer_reply(ticket_id, HTML_REPLY.format(token=tokens[1]), html=True)
    driver.customer_reply(ticket_id, TEXT_REPLY.format(token=tokens[2]))
    with open_adapter(driver) as adapter:
        messages = adapter.list_messages(adapter.get_ticket(ticket_id))
    opening, reply, text_reply = (only(messages, token) for token in tokens)
    for message in (opening, reply, text_reply):
        assert not re.search(r"</?(?:p|div|br|b|ul|li|blockquote)\b|&amp;|&lt;", message.body), (
            f"markup left in {message.body!r}"
        )
    assert "printer & scanner stopped." in opening.body and "bought in May" in opening.body
    assert reply.body.startswith("It still fails with error"), reply.body
    assert text_reply.body.startswith("Still broken after the update"), text_reply.body
    for message in (reply, text_reply):
        for gone in ("turning it off", "Old history", "update the driver", MARKER_PREFIX,
                     "wrote:", "Acme Inc", "+1 555"):
            assert gone not in message.body, f"{gone!r} left in {message.body!r}"
        assert message.role is Role.CUSTOMER and message.public


def post_and_recognise(driver: HelpdeskDriver) -> None:
    """Our post lands as a draft or private note, keeps its lines, and is found again."""
    ticket_id = driver.create_ticket(unique("Please help"))
    ref = f"conf_{uuid.uuid4().hex[:12]}"
    marker = MARKER_PREFIX + ref
    text = f"First line of the answer.\nSecond line.\n\n— {marker}"
    with open_adapter(driver) as adapter:
        start = baseline(adapter, driver)
        posted = adapter.post_draft(ticket_id, text)
        assert posted.kind == ("draft" if adapter.capabilities.drafts else "note"), posted
        assert posted.external_id, "post_draft returned no id"
        ours = [body.replace("\r\n", "\n") for body in driver.posts_by_connector(ticket_id)]
        assert len(ours) == 1 and marker in ours[0], f"posts on the ticket: {ours}"
        assert "First line of the answer.\nSecond line." in ours[0], "line breaks were lost"
        assert not any(marker in body for body in driver.visible_to_customer(ticket_id)), (
            "the customer can see our draft"
        )
        driver.settle()
        drain(adapter, start)  # the next poll: whatever it reports must not change the answer
        ticket = adapter.get_ticket(ticket_id)
        found = adapter.find_posted(ticket, marker)
        assert found == posted.external_id, f"find_posted gave {found!r}, posted {posted!r}"
        for message in adapter.list_messages(ticket):
            if marker in message.body:
                assert not (message.role is Role.CUSTOMER and message.public), (
                    "our post reads as a customer message"
                )


def resolved_and_reopened(driver: HelpdeskDriver) -> None:
    """Resolving and reopening show in ``get_ticket`` and in the change feed."""
    ticket_id = driver.create_ticket(unique("Resolve me"))
    with open_adapter(driver) as adapter:
        assert not adapter.get_ticket(ticket_id).resolved, "a new ticket reads as resolved"
        for action, expected in ((driver.resolve, True), (driver.reopen, False)):
            start = baseline(adapter, driver)
            action(ticket_id)
            _expect_resolved(adapter, driver, start, ticket_id, expected, action.__name__)


def custom_resolved_status(driver: HelpdeskDriver) -> None:
    """A custom status in the resolved category counts as resolved."""
    ticket_id = driver.create_ticket(unique("Custom status"))
    with open_adapter(driver) as adapter:
        start = baseline(adapter, driver)
        driver.resolve_with_custom_status(ticket_id)
        _expect_resolved(adapter, driver, start, ticket_id, True, "resolve_with_custom_status")


def _expect_resolved(adapter: Adapter, driver: HelpdeskDriver, start: str, ticket_id: str,
                     expected: bool, action: str) -> None:
    driver.settle()
    report = last_report(drain(adapter, start)[0], ticket_id)
    assert report is not None, f"after {action} the ticket was not reported"
    assert report.resolved is expected, f"after {action} the feed says resolved={report.resolved}"
    assert adapter.get_ticket(ticket_id).resolved is expected, (
        f"after {action} get_ticket says resolved={not expected}"
    )


def rate_limit_is_honoured(driver: HelpdeskDriver) -> None:
    """A 429 is waited out inline when short, and raised with the vendor's wait when long."""
    with open_adapter(driver) as adapter:
        start = baseline(adapter, driver)
        driver.rate_limit_next(1, 1.0)
        drain(adapter, start)
        times = driver.calls_since_rate_limit()
        assert len(times) >= 2, "the rate-limited call was not repeated"
        assert times[1] - times[0] >= 0.95, (
            f"the retry came {times[1] - times[0]:.2f}s after a 429 that asked for 1s"
        )
    with open_adapter(driver) as adapter:
        driver.rate_limit_next(1, 30.0)
        try:
            adapter.poll_changes(start, recent())
        except RateLimited as exc:
            assert exc.retry_after is not None and exc.retry_after >= 25, (
                f"the vendor asked for 30s, the adapter says {exc.retry_after}"
            )
        else:
            raise AssertionError("a 429 asking for 30s was not raised as RateLimited")


def wrong_credentials_fail(driver: HelpdeskDriver) -> None:
    """401 is AuthenticationFailed, from ``check`` and from polling."""
    settings = driver.wrong_credentials(driver.adapter_settings("conformance"))
    adapter = build_adapter(driver, settings)
    try:
        expect_error((AuthenticationFailed,), adapter.check, "check() with wrong credentials")
        expect_error((AuthenticationFailed,), lambda: adapter.poll_changes(None, recent()),
                     "poll_changes() with wrong credentials")
    finally:
        adapter.close()
    with open_adapter(driver) as good:
        description = good.check()
        assert isinstance(description, str) and description, "check() described nothing"


def forbidden_ticket(driver: HelpdeskDriver) -> None:
    """403 on one ticket is PermissionDenied (or NotFound) for it; the poll goes on."""
    denied, other = driver.create_ticket(unique("Secret")), driver.create_ticket(unique("Open"))
    with open_adapter(driver) as adapter:
        start = baseline(adapter, driver)
        driver.deny_access(denied)
        driver.customer_reply(other, unique("Still here"))
        driver.settle()
        kinds = (PermissionDenied, NotFound)
        expect_error(kinds, lambda: adapter.get_ticket(denied), "get_ticket of a 403 ticket")
        expect_error(kinds, lambda: adapter.list_messages(as_ticket(denied)),
                     "list_messages of a 403 ticket")
        assert other in reported(drain(adapter, start)[0]), "the poll stopped at the 403 ticket"


def removed_ticket(driver: HelpdeskDriver, how: str) -> None:
    """A deleted, merged or moved ticket is reported by the feed as resolved (else the engine
    never learns that its session is over) and answers NotFound/Moved or reads as resolved; the
    poll goes on. A merged ticket may instead stay out of the feed: its messages then show up on
    the ticket it was merged into, from which the engine learns it (``engine_removed_...``)."""
    gone, other = driver.create_ticket(unique("Goes away")), driver.create_ticket(unique("Stays"))
    with open_adapter(driver) as adapter:
        start = baseline(adapter, driver)
        driver.remove_ticket(gone, how)
        driver.customer_reply(other, unique("Still here"))
        driver.settle()
        pages = drain(adapter, start)[0]
        assert other in reported(pages), f"the poll stopped at the {how} ticket"
        report = last_report(pages, gone)
        assert report is not None or how == "merged", f"the feed did not report the {how} ticket"
        assert report is None or report.resolved, f"the feed reports the {how} ticket as open"
        try:
            ticket = adapter.get_ticket(gone)
        except (NotFound, Moved):
            return
        assert ticket.external_id == gone and ticket.resolved, (
            f"get_ticket of the {how} ticket gave {ticket.external_id} resolved={ticket.resolved}"
        )


def malformed_item(driver: HelpdeskDriver) -> None:
    """One malformed ticket fails alone, with a WARNING naming it and no customer text."""
    bodies = [unique(f"Private words {i}") for i in range(3)]
    tickets = [driver.create_ticket(body) for body in bodies]
    broken = tickets[1]
    with open_adapter(driver) as adapter, LogCapture() as logs:
        start = baseline(adapter, driver)
        driver.corrupt_ticket(broken)
        for ticket_id in tickets:
            driver.customer_reply(ticket_id, unique("Ping"))
        driver.settle()
        pages = drain(adapter, start)[0]
        seen = reported(pages)
        for good, body in ((tickets[0], bodies[0]), (tickets[2], bodies[2])):
            assert good in seen, f"ticket {good} was lost with the malformed one"
            only(adapter.list_messages(adapter.get_ticket(good)), body)
        failed = broken not in seen
        if not failed:
            try:
                adapter.list_messages(last_report(pages, broken) or as_ticket(broken))
            except MalformedResponse:
                failed = True
    naming = re.compile(rf"(?<![0-9A-Za-z]){re.escape(broken)}(?![0-9A-Za-z])")
    assert failed or any(naming.search(text) for text in logs.texts()), (
        f"ticket {broken} was read as if nothing were wrong: no error, no WARNING naming it "
        f"(warnings: {logs.texts()})"
    )
    leaked = [text for text in logs.texts() if any(body in text for body in bodies)]
    assert not leaked, f"customer text in logs above DEBUG: {leaked}"


ADAPTER_SCENARIOS: dict[str, Callable[[HelpdeskDriver], None]] = {
    "changes_across_pages": changes_across_pages,
    "roles_and_visibility": roles_and_visibility,
    "first_message": first_message,
    "html_becomes_clean_text": html_becomes_clean_text,
    "post_and_recognise": post_and_recognise,
    "resolved_and_reopened": resolved_and_reopened,
    "custom_resolved_status": custom_resolved_status,
    "rate_limit_is_honoured": rate_limit_is_honoured,
    "wrong_credentials_fail": wrong_credentials_fail,
    "forbidden_ticket": forbidden_ticket,
    **{f"removed_ticket[{how}]": partial(removed_ticket, how=how) for how in REMOVALS},
    "malformed_item": malformed_item,
}
