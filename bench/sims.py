"""One simulator in its own process, driven by ``bench/run.py`` over stdin/stdout JSON lines.

Each simulator gets a process of its own so its CPU never shares an interpreter (and a GIL) with
the daemon or with the other simulator: the benchmark measures the daemon, not the simulators'
contention. The control channel is the process's stdin: one JSON command per line, one JSON
answer per line. End of stdin stops the simulator, so a crashed driver never leaves it behind.

    python bench/sims.py zendesk
    python bench/sims.py uppzy --answer-time 5-30

The first line written is ``{"url": ..., "base_url": ...}``. Commands: ``{"cmd": "users", "n"}``
(zendesk: create requesters), ``{"cmd": "seed", "n", "rate"}`` (zendesk: one ticket per requester,
all at once or at ``rate`` per second, in the background), ``{"cmd": "progress"}``,
``{"cmd": "report"}``, ``{"cmd": "stop"}``.

Times are ``time.monotonic()``, which on Linux is one clock for every process of the machine, so
the driver can subtract times taken in different processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from adapters.zendesk.simulator import ZendeskSimulator
from connector.sandbox.uppzy_sim import Seconds, UppzySimulator

API_KEY = "bench-key"
ZD_TOKEN = "bench-zd-token"
BOT_EMAIL = "bot@example.com"


class BenchZendesk(ZendeskSimulator):
    """The Zendesk simulator plus the precise times the export's one-second stamps lack.

    ``visible_at``: when each ticket's first customer comment existed (with ``exclude_newest=0``
    it is in the export from that moment); ``notes_at``: when each of the bot's notes was written.
    """

    def __init__(self) -> None:
        super().__init__(exclude_newest=0, api_token=ZD_TOKEN, bot_email=BOT_EMAIL)
        self.visible_at: dict[int, float] = {}
        self.notes_at: dict[int, list[float]] = defaultdict(list)
        self.requesters: list[int] = []
        self.seeding_done = threading.Event()

    def _new_comment(self, ticket: Any, author_id: int, *args: Any, **kwargs: Any) -> Any:
        comment = super()._new_comment(ticket, author_id, *args, **kwargs)
        now = time.monotonic()
        if author_id == self.bot_user_id:
            self.notes_at[ticket.id].append(now)
        else:
            self.visible_at.setdefault(ticket.id, now)
        return comment

    def make_users(self, n: int) -> None:
        self.requesters = [
            self.add_user(f"Customer {i}", "end-user", f"c{i}@example.org") for i in range(n)
        ]

    def seed(self, n: int, rate: float) -> None:
        """One ticket per requester, each with one customer question."""
        def run() -> None:
            started = time.monotonic()
            for i, requester in enumerate(self.requesters[:n]):
                if rate > 0:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.create_ticket(requester, f"Question {i}: how do I reset my password?",
                                   subject=f"Question {i}")
            self.seeding_done.set()

        threading.Thread(target=run, name="seed", daemon=True).start()

    def progress(self) -> dict[str, Any]:
        with self.lock:
            return {"tickets": len(self.visible_at), "posted": len(self.notes_at),
                    "notes": sum(len(v) for v in self.notes_at.values()),
                    "seeded": self.seeding_done.is_set(), "calls": self.calls_by_endpoint()}

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {"visible_at": self.visible_at, "notes_at": self.notes_at,
                    "calls": self.calls_by_endpoint()}


def uppzy_report(sim: UppzySimulator) -> dict[str, Any]:
    """Per request: its session and monotonic times; no question or answer text."""
    keep = ("session_id", "created_at", "completed_at", "delivered_at", "status_polls", "mode")
    return {"requests": [{k: r[k] for k in keep} for r in sim.requests_for()],
            "calls": sim.calls_by_endpoint()}


def parse_seconds(text: str) -> Seconds:
    """``0``, ``2.5`` or a uniform range ``5-30``."""
    low, sep, high = text.partition("-")
    return (float(low), float(high)) if sep else float(low)


def serve(kind: str, answer_time: str) -> None:
    sim: BenchZendesk | UppzySimulator
    if kind == "zendesk":
        sim = BenchZendesk()
    else:
        spec = parse_seconds(answer_time)
        # The same time for both modes: the daemon asks asynchronously, the baseline waits.
        sim = UppzySimulator(api_keys={API_KEY: "ok"}, answer_time=spec, sync_latency=spec)
    sim.start()
    try:
        _reply({"url": sim.url, "base_url": getattr(sim, "base_url", sim.url)})
        for line in sys.stdin:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "stop":
                _reply({"ok": True})
                break
            _reply(_handle(sim, name, command))
    finally:
        sim.stop()


def _handle(sim: BenchZendesk | UppzySimulator, name: str, command: dict[str, Any]
            ) -> dict[str, Any]:
    if isinstance(sim, BenchZendesk):
        if name == "users":
            sim.make_users(int(command["n"]))
            return {"ok": True}
        if name == "seed":
            sim.seed(int(command["n"]), float(command.get("rate") or 0))
            return {"ok": True, "at": time.monotonic()}
        if name == "progress":
            return sim.progress()
        if name == "report":
            return sim.report()
    else:
        if name == "progress":
            with sim.lock:
                return {"requests": len(sim.requests), "calls": sim.calls_by_endpoint()}
        if name == "report":
            return uppzy_report(sim)
    return {"error": f"unknown command {name!r}"}


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("zendesk", "uppzy"))
    parser.add_argument("--answer-time", default="0",
                        help="Uppzy answer time in seconds: 0, 2.5 or a range 5-30")
    args = parser.parse_args()
    serve(args.kind, args.answer_time)


if __name__ == "__main__":
    main()
