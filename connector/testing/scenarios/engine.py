"""Scenarios that run the whole daemon against the driver's helpdesk and a simulated Uppzy, for the
invariants that belong to the pipeline.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.base import Adapter, ChangePage, Ticket
from connector.config import parse_config
from connector.engine.runtime import Runtime
from connector.testing.helpdesk_driver import PAGE_SIZE, REMOVALS, HelpdeskDriver, Unsupported
from connector.testing.scenarios.support import unique
from connector.testing.uppzy_sim import UppzySimulator

ENGINE_ADAPTER = "hd"  # the adapter's name in engine scenarios; session ids are "hd-<ticket>"


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
