"""The contract between the adapter conformance suite and each helpdesk under test.

The suite (``tests/conformance/``) runs the same scenarios against every adapter. It acts on the
helpdesk only through a ``HelpdeskDriver``: a small object that plays the people around a ticket
(customer, agent, automation) on a simulator or a real server, and can make the helpdesk
misbehave. A third-party adapter gets the same proof by writing one driver.

Finding drivers: an adapter package that ships a simulator also ships ``adapters/<type>/driver.py``
with a context manager ``open_driver()`` that starts its simulator, yields a ``HelpdeskDriver`` and
stops everything on exit (so the suite can also be pointed at a staging account by a driver that
talks to a real helpdesk). ``tests/conformance`` imports every such module it finds; drivers for
helpdesks that need a real server (Request Tracker) live with the tests.

Scenarios are plain functions taking a driver; they raise ``AssertionError`` when the adapter is
wrong and ``Unsupported`` when the helpdesk has no such thing. ``ADAPTER_SCENARIOS`` call the
adapter directly; ``ENGINE_SCENARIOS`` run the whole daemon against the Uppzy simulator, for the
invariants that belong to the pipeline.
"""

from __future__ import annotations

import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from adapters.base import Adapter, ChangePage, Message, Role, Ticket
from adapters.registry import adapter_class
from adapters.simulation import Fault
from connector.config import parse_config
from connector.core.errors import (
    AuthenticationFailed,
    MalformedResponse,
    Moved,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator


class Unsupported(Exception):
    """The helpdesk has no such thing (e.g. custom statuses); the scenario is skipped."""


class SimulatorRateLimits:
    """The two rate-limit fault methods of a driver whose helpdesk is a ``Simulator``.

    Subclasses set ``sim`` (the simulator, or a fault proxy in front of a real server) and
    ``rate_limit_body`` (the vendor's 429 body); the simulator adds the vendor's own headers.
    """

    sim: Any
    rate_limit_body: Any = None
    _calls_mark = 0

    def rate_limit_next(self, times: int, retry_after: float) -> None:
        with self.sim.lock:
            self._calls_mark = len(self.sim.calls)
        self.sim.add_fault(Fault(
            status=429, retry_after=retry_after, times=times, body=self.rate_limit_body,
        ))

    def calls_since_rate_limit(self) -> list[float]:
        with self.sim.lock:
            return [call.at for call in self.sim.calls[self._calls_mark:]]


REMOVALS = ("deleted", "merged", "moved")


@runtime_checkable
class HelpdeskDriver(Protocol):
    """Plays the humans and the faults around one helpdesk. Ticket ids are strings.

    Every method may raise ``Unsupported`` when the helpdesk (or this test setup) has no such
    thing; the scenarios that need it are then skipped with the exception's text as reason.
    Bodies are matched by the suite as substrings of the adapter's clean text, so drivers pass
    them on unchanged (HTML bodies as HTML).
    """

    type_name: str  # the adapter's YAML ``type``
    channels: tuple[str, ...]  # how a customer can open a ticket ("web", "email"...); [0] default

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        """The adapter's YAML section (as a dict, with ``name`` and ``type``) for this helpdesk.

        ``extra`` may carry ``page_size`` (the suite asks for small pages to cross page
        boundaries; drivers of adapters without such a setting drop it) and ``start_from``;
        other keys are passed through.
        """
        ...

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The same settings with credentials the helpdesk answers with 401."""
        ...

    def settle(self) -> None:
        """Return once everything done so far is visible to the change feed.

        Simulators: nothing to do (or skip an exclusion window). Real helpdesks whose search is
        eventually consistent wait here, boundedly.
        """
        ...

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        """The customer opens a ticket through ``channel`` (default ``channels[0]``); the first
        message lives wherever the vendor keeps it (description, first thread, Create...)."""
        ...

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        """The ticket's customer writes again, publicly."""
        ...

    def agent_reply(self, ticket_id: str, body: str) -> None:
        """A human agent (not the connector's user) answers publicly."""
        ...

    def internal_note(self, ticket_id: str, body: str) -> None:
        """A human agent (not the connector's user) writes a private note."""
        ...

    def system_event(self, ticket_id: str, body: str) -> None:
        """Automation acts on the ticket: a trigger/autoreply message carrying ``body`` where the
        helpdesk has them, else an automatic event (its text need not contain ``body``)."""
        ...

    def resolve(self, ticket_id: str) -> None:
        """An agent resolves the ticket with the helpdesk's standard resolved status."""
        ...

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        """Resolve through a custom status in the resolved category; Unsupported if none."""
        ...

    def reopen(self, ticket_id: str) -> None:
        """An agent sets the ticket back to an open status."""
        ...

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        """``how`` in ``REMOVALS``: delete, merge into another ticket, or move the ticket away
        (another mailbox/queue/account). The API answers 404 or 301 for it from then on, or
        shows it in a resolved state, as the vendor really does."""
        ...

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        """Bodies of the drafts/notes the connector's user wrote on the ticket, oldest first,
        as plain text."""
        ...

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        """Bodies the customer can see on the ticket (to prove our drafts/notes are not)."""
        ...

    # ----- faults -------------------------------------------------------------------------
    def rate_limit_next(self, times: int, retry_after: float) -> None:
        """The next ``times`` API calls get 429 with the vendor's rate-limit headers saying to
        wait ``retry_after`` seconds (a whole number of seconds is asked for)."""
        ...

    def calls_since_rate_limit(self) -> list[float]:
        """Monotonic times of the API calls made since ``rate_limit_next``, 429s included."""
        ...

    def deny_access(self, ticket_id: str) -> None:
        """From now on the API answers 403 for this ticket (e.g. moved to a group our user may
        not see)."""
        ...

    def corrupt_ticket(self, ticket_id: str) -> None:
        """From now on the ticket's data is malformed where this vendor carries it: its item in
        the change feed, or its conversation (a message without id, a body of the wrong type)."""
        ...


# ----- shared pieces of the scenarios -------------------------------------------------------
PAGE_SIZE = 2  # small pages, so a handful of tickets crosses several page boundaries
MAX_PAGES = 60  # a change feed that pages longer than this for a handful of tickets never ends
ENGINE_ADAPTER = "hd"  # the adapter's name in engine scenarios; session ids are "hd-<ticket>"
MARKER_PREFIX = "AI draft, Uppzy ref "


def unique(text: str) -> str:
    """``text`` with a token no other ticket on a shared test server carries."""
    return f"{text} [{uuid.uuid4().hex[:10]}]"


def build_adapter(driver: HelpdeskDriver, settings: dict[str, Any] | None = None,
                  **extra: Any) -> Adapter:
    """The adapter the driver's settings describe, built as the daemon builds it."""
    raw = settings if settings is not None else driver.adapter_settings("conformance", **extra)
    cls = adapter_class(raw["type"])
    return cls(cls.settings_model.model_validate(raw))


@contextmanager
def open_adapter(driver: HelpdeskDriver, **extra: Any) -> Iterator[Adapter]:
    adapter = build_adapter(driver, **extra)
    try:
        yield adapter
    finally:
        adapter.close()


def recent() -> datetime:
    """A ``start_from`` for first polls: a little before now."""
    return datetime.now(UTC) - timedelta(seconds=5)


def drain(adapter: Adapter, cursor: str | None,
          on_page: Callable[[int, ChangePage], None] | None = None) -> tuple[list[ChangePage], str]:
    """Every page from ``cursor`` until ``more`` is False; the cursor to resume from."""
    pages: list[ChangePage] = []
    start = recent()
    for number in range(MAX_PAGES):
        page = adapter.poll_changes(cursor, start)
        assert isinstance(page.cursor, str) and page.cursor, "a page must carry a cursor"
        pages.append(page)
        if on_page is not None:
            on_page(number, page)
        if not page.more:
            return pages, page.cursor
        assert page.cursor != cursor or page.tickets, (
            f"page {number} says more=True but neither moved the cursor nor brought tickets"
        )
        cursor = page.cursor
    raise AssertionError(f"the change feed still had more after {MAX_PAGES} pages")


def baseline(adapter: Adapter, driver: HelpdeskDriver) -> str:
    """A cursor at 'now': what a running daemon holds before the scenario acts."""
    driver.settle()
    return drain(adapter, None)[1]


def reported(pages: list[ChangePage]) -> list[str]:
    return [t.external_id for page in pages for t in page.tickets]


def last_report(pages: list[ChangePage], ticket_id: str) -> Ticket | None:
    found = [t for page in pages for t in page.tickets if t.external_id == ticket_id]
    return found[-1] if found else None


def containing(messages: list[Message], text: str) -> list[Message]:
    return [m for m in messages if text in m.body]


def only(messages: list[Message], text: str) -> Message:
    """The one message someone wrote with ``text``; automatic copies (an autoreply quoting the
    customer, the helpdesk's record of outgoing mail) may repeat it as SYSTEM messages."""
    found = [m for m in containing(messages, text) if m.role is not Role.SYSTEM]
    assert len(found) == 1, (
        f"expected exactly one non-system message with {text!r}, found {len(found)}: "
        f"{[(m.external_id, m.role.value, m.body[:80]) for m in messages]}"
    )
    return found[0]


def as_ticket(ticket_id: str) -> Ticket:
    """What the engine hands ``list_messages`` when it knows no more than the id."""
    return Ticket(external_id=ticket_id, status="", resolved=False)


class LogCapture(logging.Handler):
    """WARNING and above, from every logger, while the ``with`` block runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def __enter__(self) -> LogCapture:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)


def expect_error(kinds: tuple[type[Exception], ...], call: Callable[[], Any], what: str) -> None:
    try:
        result = call()
    except kinds:
        return
    raise AssertionError(f"{what}: expected {' or '.join(k.__name__ for k in kinds)}, "
                         f"got {result!r}")


# ----- adapter-level scenarios --------------------------------------------------------------
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


# ----- engine-level scenarios ---------------------------------------------------------------
class EngineRun:
    """The daemon (in-process, on a temporary SQLite) against the driver's helpdesk and a
    simulated Uppzy; ``cycle()`` is one ``run_once`` after the helpdesk has settled."""

    def __init__(self, driver: HelpdeskDriver, engine: Runtime, uppzy: UppzySimulator) -> None:
        self.driver = driver
        self.engine = engine
        self.uppzy = uppzy

    @property
    def adapter(self) -> Adapter:
        return self.engine.adapters[ENGINE_ADAPTER]

    def cycle(self) -> None:
        self.driver.settle()
        assert self.engine.run_once(), "the engine did not finish its work"

    def questions(self, ticket_id: str) -> list[str]:
        """What Uppzy was asked for the ticket, over all its sessions (``-2``... after a close)."""
        base = f"{ENGINE_ADAPTER}-{ticket_id}"
        asked = self.uppzy.questions(base)
        for seq in range(2, 10):
            asked += self.uppzy.questions(f"{base}-{seq}")
        return asked

    def posts(self, ticket_id: str) -> list[str]:
        return self.driver.posts_by_connector(ticket_id)

    def session_closed(self, ticket_id: str) -> bool:
        return f"{ENGINE_ADAPTER}-{ticket_id}" in self.uppzy.closed_sessions()


@contextmanager
def engine_run(driver: HelpdeskDriver, **adapter_extra: Any) -> Iterator[EngineRun]:
    """A started engine whose first poll already ran: only what happens next is new work."""
    uppzy = UppzySimulator(api_keys={"k": "ok"}, answer_time=0.02)
    uppzy.start()
    try:
        # A step still finishing its last remote call may touch the SQLite files after the
        # engine stopped; a leftover temp file must not fail the scenario.
        with tempfile.TemporaryDirectory(prefix="conformance-", ignore_cleanup_errors=True) as tmp:
            config = parse_config({
                "uppzy": {"base_url": uppzy.base_url, "api_key": "k", "site_id": "site-1",
                          "poll_interval": "0.1s", "answer_timeout": "20s"},
                "database": {"url": f"sqlite:///{Path(tmp) / 'connector.db'}"},
                "adapters": [driver.adapter_settings(
                    ENGINE_ADAPTER, start_from="3s", poll_interval="0.5s", **adapter_extra
                )],
                "engine": {"tick": "0.1s"},
            })
            engine = Runtime(config)
            engine.start()
            try:
                run = EngineRun(driver, engine, uppzy)
                run.cycle()
                yield run
            finally:
                engine.shutdown(grace=5)
                engine.db.dispose()
    finally:
        uppzy.stop()


def engine_only_customer_messages_start_turns(driver: HelpdeskDriver) -> None:
    """Notes, automation and agent replies never start a turn; each customer message does."""
    with engine_run(driver) as run:
        question = unique("Where is my order?")
        ticket_id = driver.create_ticket(question)
        run.cycle()
        assert len(run.posts(ticket_id)) == 1, "the opening question got no single draft"
        driver.internal_note(ticket_id, unique("Internal remark"))
        driver.system_event(ticket_id, unique("Automatic message"))
        run.cycle()
        assert len(run.posts(ticket_id)) == 1, "a note or an automation started a turn"
        follow_up = unique("And the invoice?")
        driver.customer_reply(ticket_id, follow_up)
        run.cycle()
        assert len(run.posts(ticket_id)) == 2, "the customer's follow-up got no single draft"
        driver.agent_reply(ticket_id, unique("A human answers"))
        run.cycle()
        assert len(run.posts(ticket_id)) == 2, "an agent's reply started a turn"
        asked = run.questions(ticket_id)
        assert len(asked) == 2 and question in asked[0] and follow_up in asked[1], asked


def engine_own_post_never_starts_a_turn(driver: HelpdeskDriver) -> None:
    """Our post changes the ticket, so it comes back in the feed; it must not answer itself."""
    with engine_run(driver) as run:
        ticket_id = driver.create_ticket(unique("Hello there"))
        for _ in range(3):
            run.cycle()
        assert len(run.posts(ticket_id)) == 1, f"posts: {run.posts(ticket_id)}"
        assert len(run.questions(ticket_id)) == 1, run.questions(ticket_id)


def engine_paging_processes_each_message_once(driver: HelpdeskDriver) -> None:
    """Small pages, each repeating the previous page's last ticket (as time-based feeds do at
    their edges), and a change while paging: every customer message asked exactly once."""
    with engine_run(driver, page_size=PAGE_SIZE) as run:
        written: dict[str, list[str]] = {}
        for i in range(5):
            question = unique(f"Question {i}")
            written[driver.create_ticket(question)] = [question]
        first = next(iter(written))
        _overlap_pages_and_change(run, lambda: _reply(driver, written, first))
        for _ in range(3):
            run.cycle()
        for ticket_id, texts in written.items():
            asked = "\n".join(run.questions(ticket_id))
            for text in texts:
                assert asked.count(text) == 1, f"{text!r} was asked {asked.count(text)} times"
            assert len(run.posts(ticket_id)) == len(run.questions(ticket_id)), (
                f"ticket {ticket_id}: {len(run.posts(ticket_id))} posts for "
                f"{len(run.questions(ticket_id))} questions"
            )


def _reply(driver: HelpdeskDriver, written: dict[str, list[str]], ticket_id: str) -> None:
    text = unique("Written while the daemon paged")
    driver.customer_reply(ticket_id, text)
    written[ticket_id].append(text)


def _overlap_pages_and_change(run: EngineRun, change: Callable[[], None]) -> None:
    """From now on every page the engine gets starts with the last ticket of the page before;
    ``change`` is made once, right after the first page was served."""
    adapter = run.adapter
    original = adapter.poll_changes
    previous: list[Ticket] = []
    done: list[bool] = []

    def poll_changes(cursor: str | None, start_from: datetime) -> ChangePage:
        page = original(cursor, start_from)
        tickets = [*previous[-1:], *page.tickets]
        previous[:] = page.tickets or previous
        if not done:
            done.append(True)
            change()
            run.driver.settle()
        return ChangePage(tickets, page.cursor, page.more)

    adapter.poll_changes = poll_changes  # type: ignore[method-assign]


def engine_removed_ticket_ends_session(driver: HelpdeskDriver) -> None:
    """Deleted, merged and moved tickets close their sessions; the others go on."""
    with engine_run(driver) as run:
        doomed = {how: driver.create_ticket(unique(f"Soon {how}")) for how in REMOVALS}
        other = driver.create_ticket(unique("Hi"))
        run.cycle()
        removed: dict[str, str] = {}
        for how, ticket_id in doomed.items():
            try:
                driver.remove_ticket(ticket_id, how)
            except Unsupported:
                continue
            removed[how] = ticket_id
        if not removed:
            raise Unsupported("the helpdesk can neither delete, merge nor move a ticket")
        driver.customer_reply(other, unique("One more question"))
        run.cycle()
        run.cycle()
        assert len(run.posts(other)) == 2, "the other ticket's follow-up got no single draft"
        still_open = [how for how, gone in removed.items() if not run.session_closed(gone)]
        assert not still_open, f"sessions still open after: {still_open}"


def engine_malformed_item_fails_alone(driver: HelpdeskDriver) -> None:
    """A malformed ticket does not stop the others from being answered."""
    with engine_run(driver) as run:
        tickets = [driver.create_ticket(unique(f"Question {i}")) for i in range(3)]
        driver.corrupt_ticket(tickets[1])
        run.cycle()
        for ticket_id in (tickets[0], tickets[2]):
            assert len(run.posts(ticket_id)) == 1, f"ticket {ticket_id} was not answered"


ENGINE_SCENARIOS: dict[str, Callable[[HelpdeskDriver], None]] = {
    "engine_only_customer_messages_start_turns": engine_only_customer_messages_start_turns,
    "engine_own_post_never_starts_a_turn": engine_own_post_never_starts_a_turn,
    "engine_paging_processes_each_message_once": engine_paging_processes_each_message_once,
    "engine_removed_ticket_ends_session": engine_removed_ticket_ends_session,
    "engine_malformed_item_fails_alone": engine_malformed_item_fails_alone,
}
SCENARIOS = {**ADAPTER_SCENARIOS, **ENGINE_SCENARIOS}
