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
from rich.table import Table

from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import parse_config
from connector.sandbox.uppzy_sim import UppzySimulator

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


def run_demo(seconds: float = 30.0, console: Console | None = None) -> int:
    from connector.engine.runtime import Engine
    from connector.scheduler import Daemon

    console = console or Console()
    uppzy = UppzySimulator(answer_time=(1.0, 4.0)).start()
    zendesk = ZendeskSimulator(exclude_newest=1.0).start()
    stop = threading.Event()
    try:
        scenario = Scenario(zendesk)
        scenario.seed()
        with tempfile.TemporaryDirectory(prefix="connector-demo-") as tmp:
            config = parse_config(demo_config(Path(tmp) / "demo.db", uppzy, zendesk))
            engine = Engine(config)
            engine.start()
            daemon = Daemon(engine)
            console.print(f"[bold]demo[/bold]: Uppzy simulator {uppzy.base_url}, Zendesk "
                          f"simulator {zendesk.url}; running the daemon for {seconds:.0f}s")
            runner = threading.Thread(target=daemon.run, name="demo-daemon")
            started = time.monotonic()
            runner.start()
            actor = threading.Thread(target=scenario.play, args=(stop, started), daemon=True)
            actor.start()
            stop.wait(seconds)
            stop.set()
            daemon.stop("demo finished")
            runner.join(timeout=10)
            engine.shutdown()
            engine.db.dispose()
        _report(console, scenario, uppzy, zendesk)
        return 0
    finally:
        stop.set()
        zendesk.stop()
        uppzy.stop()


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
    console.print(f"feedback recorded by Uppzy: {uppzy.feedback_recorded() or 'none'}")
    console.print(f"Uppzy calls: {uppzy.calls_by_endpoint()}")


def _sessions_of(uppzy: UppzySimulator, base: str) -> list[str]:
    """The ticket's session ids: the base one and its ``-2``, ``-3`` successors."""
    with uppzy.lock:
        ids = [sid for _site, sid in uppzy.sessions]
    return sorted(
        sid for sid in ids
        if sid == base or (sid.startswith(base + "-") and sid[len(base) + 1:].isdigit())
    )
