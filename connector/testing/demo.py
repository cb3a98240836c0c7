"""``connector demo``: the whole daemon against the simulators, on a throw-away SQLite file.

It shows a new user, in about thirty seconds and with nothing to configure, what the daemon does
with a helpdesk: drafts for customer messages, nothing for agent replies or internal notes, a
follow-up answered in the same session, resolved tickets' sessions closed, a reopened ticket
continuing in a new session, and feedback sent for a tagged ticket.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import parse_config
from connector.testing.uppzy_sim import UppzySimulator

QUESTIONS = [
    "How do I reset my password?",
    "Can I get a refund for last month's invoice?",
    "The mobile app crashes when I open settings.",
    "Do you ship to Norway?",
    "How can I change the e-mail address on my account?",
    "Is there an API rate limit on the starter plan?",
    "My discount code SPRING is not accepted.",
    "Where can I download my invoices?",
]


@dataclass
class Scenario:
    """Seeded tickets and timed customer/agent actions on the Zendesk simulator."""

    zendesk: ZendeskSimulator
    tickets: dict[int, str] = field(default_factory=dict)  # id -> what happens to it
    actions: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)

    def seed(self) -> None:
        zd = self.zendesk
        agent = zd.add_user("Alex Agent", "agent", "alex@example.com")
        customers = [zd.add_user(f"Customer {i}", "end-user", f"c{i}@example.org")
                     for i in range(len(QUESTIONS))]
        for i, question in enumerate(QUESTIONS):
            tid = zd.create_ticket(customers[i], question, subject=question[:40])
            self.tickets[tid] = "customer question"
        ids = list(self.tickets)
        zd.add_comment(ids[1], agent, "Refunds are on their way.", public=True)
        self.tickets[ids[1]] = "agent already replied: no draft"
        zd.add_comment(ids[2], agent, "Looks like the v3 bug.", public=False)
        self.tickets[ids[2]] = "internal note only: still drafted"
        self._at(8, ids[0], "follow-up in the same session",
                 lambda: zd.add_comment(ids[0], customers[0], "Also, can I enable 2FA?"))
        self._at(12, ids[3], "resolved: session closed",
                 lambda: zd.set_status(ids[3], "solved"))
        self._at(12, ids[4], "resolved, then reopened: continues in -2",
                 lambda: zd.set_status(ids[4], "solved"))
        self._at(18, ids[4], None, lambda: zd.add_comment(
            ids[4], customers[4], "Sorry, one more thing: can I use two addresses?"))
        self._at(14, ids[5], "tagged ai_good: feedback sent",
                 lambda: zd.add_tags(ids[5], "ai_good"))

    def _at(self, when: float, ticket: int, label: str | None, action: Callable[[], None]) -> None:
        if label:
            self.tickets[ticket] = label
        self.actions.append((when, label or "", action))

    def play(self, stop: threading.Event, started: float) -> None:
        for when, _label, action in sorted(self.actions, key=lambda a: a[0]):
            if stop.wait(max(0.0, started + when - time.monotonic())):
                return
            action()


def demo_config(db_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator) -> dict:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": "test-key", "site_id": "site-1",
                  "tenant_id": "tenant-1", "poll_interval": "1s", "answer_timeout": "30s"},
        "database": {"url": f"sqlite:///{db_path}"},
        "adapters": [{
            "name": "demo-zendesk", "type": "zendesk", "url": zendesk.url,
            "auth": {"email": "bot@example.com", "api_token": "zd-token"},
            "poll_interval": "2s", "start_from": "10m",
        }],
    }


class Demo:
    """The simulators, the scenario on them, and one run of the daemon against them.

    The simulators exist before ``run`` so a caller (a test) can set faults on them first.
    """

    def __init__(self) -> None:
        self.uppzy = UppzySimulator(answer_time=(1.0, 4.0))
        self.zendesk = ZendeskSimulator(exclude_newest=1.0)
        self.scenario = Scenario(self.zendesk)

    def run(self, seconds: float, console: Console) -> int:
        self.uppzy.start()
        self.zendesk.start()
        try:
            self.scenario.seed()
            with tempfile.TemporaryDirectory(prefix="connector-demo-") as tmp:
                console.print(f"[bold]demo[/bold]: Uppzy simulator {self.uppzy.base_url}, "
                              f"Zendesk simulator {self.zendesk.url}; running the daemon for "
                              f"{seconds:.0f}s")
                self._run_daemon(Path(tmp) / "demo.db", seconds)
            _report(console, self.scenario, self.uppzy, self.zendesk)
            return 0
        finally:
            self.zendesk.stop()
            self.uppzy.stop()

    def _run_daemon(self, db_path: Path, seconds: float) -> None:
        """Run the daemon for ``seconds``; return only once nothing of it touches ``db_path``.

        Stopping the scheduler does not wait for the jobs it started: a poll could still be in
        a remote call, and writing its result after the temporary directory was removed crashed
        the demo ("unable to open database file"). So the scheduler's executor is shut down
        with waiting, then the engine's own steps are given their grace, then the file closed.
        """
        from connector.daemon.scheduler import Daemon
        from connector.engine.runtime import Runtime

        engine = Runtime(parse_config(demo_config(db_path, self.uppzy, self.zendesk)))
        engine.start()
        daemon = Daemon(engine)
        stop = threading.Event()
        runner = threading.Thread(target=daemon.run, name="demo-daemon")
        started = time.monotonic()
        runner.start()
        actor = threading.Thread(target=self.scenario.play, args=(stop, started),
                                 name="demo-scenario", daemon=True)
        actor.start()
        try:
            stop.wait(seconds)
        finally:
            stop.set()
            actor.join()
            daemon.stop("demo finished")
            runner.join()
            daemon.scheduler.remove_executor("default")  # waits for the jobs still running
            engine.shutdown()
            engine.db.dispose()


def run_demo(seconds: float = 30.0, console: Console | None = None) -> int:
    return Demo().run(seconds, console or Console())


def _report(
    console: Console, scenario: Scenario, uppzy: UppzySimulator, zendesk: ZendeskSimulator
) -> None:
    notes = zendesk.notes_by(zendesk.bot_user_id)
    closed = uppzy.closed_sessions()
    table = Table(title="what the daemon did")
    for column in ("ticket", "scenario", "drafts posted", "sessions", "closed"):
        table.add_column(column)
    for tid, label in scenario.tickets.items():
        drafts = sum(1 for n in notes if n["ticket_id"] == tid)
        sessions = _sessions_of(uppzy, f"demo-zendesk-{tid}")
        table.add_row(str(tid), label, str(drafts), ", ".join(sessions) or "-",
                      ", ".join(s for s in sessions if s in closed) or "-")
    console.print(table)
    _print_draft(console, zendesk, notes)
    console.print(_counts_table("feedback sent to Uppzy", ("request", "feedback"),
                                uppzy.feedback_recorded(), "none"))
    console.print(_counts_table("Uppzy calls", ("endpoint", "calls"),
                                uppzy.calls_by_endpoint(), "none"))


def _print_draft(console: Console, zendesk: ZendeskSimulator, notes: list[dict]) -> None:
    """The first draft as an agent finds it on the ticket: under the customer's message, a
    private comment only agents see. This, more than any count, is what a support lead wants
    to judge."""
    if not notes:
        console.print("No draft was posted in this run: try a longer one (--seconds 60).")
        return
    note = notes[0]
    ticket = note["ticket_id"]
    question = zendesk.comments(ticket)[0]
    console.print(Panel(Text(question["body"]), title=f"ticket {ticket}: the customer wrote",
                        title_align="left", expand=False))
    console.print(Panel(Text(note["body"]), border_style="yellow", title_align="left",
                        expand=False, title=f"ticket {ticket}: internal note (private, agents "
                                            "only), as posted by the connector"))


def _counts_table(title: str, columns: tuple[str, str], rows: dict[str, object],
                  empty: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for key, value in sorted(rows.items()):
        table.add_row(Text(str(key)), Text(str(value)))
    if not rows:
        table.add_row(empty, "")
    return table


def _sessions_of(uppzy: UppzySimulator, base: str) -> list[str]:
    """The ticket's session ids: the base one and its ``-2``, ``-3`` successors."""
    with uppzy.lock:
        ids = [sid for _site, sid in uppzy.sessions]
    return sorted(
        sid for sid in ids
        if sid == base or (sid.startswith(base + "-") and sid[len(base) + 1:].isdigit())
    )
