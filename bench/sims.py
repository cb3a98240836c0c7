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

Commands of the crash and fault soak (``bench/soak.py``), for both simulators:
``{"cmd": "fault", "fault": {<adapters.simulation.Fault fields>}, "for_seconds"}`` and
``{"cmd": "clear_faults"}``; ``{"cmd": "soak_report"}`` (what was posted, asked, closed and
rated, without message text). Zendesk only: ``{"cmd": "ticket", "requester", "body", "subject",
"via_channel", "tags", "ticket_id"}`` (``ticket_id`` forces the new ticket's id, for over-long
ids), ``{"cmd": "comment", "ticket", "author", "body"}``, ``{"cmd": "tag", "ticket", "tags"}``,
``{"cmd": "solve", "ticket"}``, ``{"cmd": "rate_limit", "per_minute"}`` (null: unlimited).
``--short-answers`` makes Uppzy answer with a short fixed text instead of echoing the question
(a 200 KB question would otherwise come back as a 200 KB note).

Times are ``time.monotonic()``, which on Linux is one clock for every process of the machine, so
the driver can subtract times taken in different processes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from adapters.simulation import Fault, SimRequest, SimResponse
from adapters.zendesk.simulator import ZendeskSimulator
from connector.engine.render import marker
from connector.testing.uppzy_sim import Seconds, UppzySimulator

API_KEY = "bench-key"
ZD_TOKEN = "bench-zd-token"
BOT_EMAIL = "bot@example.com"
TOKEN = re.compile(r"\[q(\d+)\]")  # the soak's id of one customer message, inside its text
FALLBACK_WORDS = "no confident answer"  # in the shipped fallback note


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
        self.comment_at: dict[int, float] = {}  # comment id -> when it was written
        self.solved_at: dict[int, list[tuple[int, float]]] = defaultdict(list)  # comments, time

    def _new_comment(self, ticket: Any, author_id: int, *args: Any, **kwargs: Any) -> Any:
        comment = super()._new_comment(ticket, author_id, *args, **kwargs)
        now = time.monotonic()
        self.comment_at[comment.id] = now
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

    # ----- the soak ----------------------------------------------------------------------------
    def soak_ticket(self, requester: int, body: str, subject: str, via_channel: str,
                    tags: list[str], ticket_id: int | None) -> int:
        """A new ticket; ``ticket_id`` forces its id (the counter then goes on where it was)."""
        with self.lock:
            if ticket_id is None:
                return self.create_ticket(requester, body, subject=subject, tags=tags,
                                          via_channel=via_channel)
            counter = self._ticket_ids
            self._ticket_ids = itertools.count(ticket_id)
            try:
                return self.create_ticket(requester, body, subject=subject, tags=tags,
                                          via_channel=via_channel)
            finally:
                self._ticket_ids = counter

    def solve(self, ticket_id: int) -> None:
        """Resolve as an agent would; the moment is kept, between which comments it fell."""
        with self.lock:
            self.set_status(ticket_id, "solved")
            self.solved_at[ticket_id].append(
                (len(self.tickets[ticket_id].comments), time.monotonic()))

    def soak_report(self) -> dict[str, Any]:
        """Per ticket its status and timeline: customer messages (their soak ids), the bot's
        notes (their marker ref, fallback or not) and resolutions, in order; no message text."""
        with self.lock:
            return {"tickets": {str(t.id): {"status": t.status, "timeline": self._timeline(t)}
                                for t in self.tickets.values()},
                    "calls": self.calls_by_endpoint()}

    def _timeline(self, ticket: Any) -> list[dict[str, Any]]:
        solved = list(self.solved_at.get(ticket.id, []))
        items: list[dict[str, Any]] = []
        for position, comment in enumerate(ticket.comments):
            items.extend({"k": "resolved", "at": at} for pos, at in solved if pos == position)
            at = self.comment_at.get(comment.id, 0.0)
            if comment.author_id == self.bot_user_id:
                refs = _MARKERS.findall(comment.text)
                items.append({"k": "note", "at": at, "ref": refs[-1] if refs else None,
                              "fallback": FALLBACK_WORDS in comment.text,
                              "public": comment.public})
            elif comment.public and getattr(self.users.get(comment.author_id), "role",
                                            None) == "end-user":
                items.append({"k": "customer", "at": at,
                              "q": [int(q) for q in TOKEN.findall(comment.text[:200])]})
        items.extend({"k": "resolved", "at": at} for pos, at in solved
                     if pos >= len(ticket.comments))
        return items


# The daemon's marker with the ref that follows it; a note's own marker is its last one.
_MARKERS = re.compile(re.escape(marker("")) + r"([A-Za-z0-9_.:-]+)")


class SoakUppzy(UppzySimulator):
    """The Uppzy simulator plus when each session close and each feedback was accepted, so the
    soak can tell which faults were under way when a close or a feedback went out twice."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accepted_at: dict[str, list[float]] = defaultdict(list)  # "close:<id>", "fb:<id>"

    def handle_session_close(self, request: SimRequest, site_id: str) -> SimResponse:
        response = super().handle_session_close(request, site_id)
        self._note(response, "close", request, "session_id")
        return response

    def handle_feedback(self, request: SimRequest, site_id: str) -> SimResponse:
        response = super().handle_feedback(request, site_id)
        self._note(response, "fb", request, "request_id")
        return response

    def _note(self, response: SimResponse, kind: str, request: SimRequest, key: str) -> None:
        body = request.json()
        if response.status == 200 and isinstance(body, dict):
            with self.lock:
                self.accepted_at[f"{kind}:{body.get(key)}"].append(time.monotonic())


def short_answer(session_id: str, message: str) -> str:
    return f"Simulated answer to a question of {len(message)} characters."


def uppzy_soak_report(sim: SoakUppzy) -> dict[str, Any]:
    """Each request's session, the soak ids its question carried and its feedback calls; each
    session's close calls. No question or answer text."""
    with sim.lock:
        requests = [{"id": r.request_id, "session_id": r.session_id, "at": r.created_at,
                     "q": sorted({int(q) for q in TOKEN.findall(r.message)}),
                     "feedback_calls": r.feedback_calls, "outcome": r.outcome}
                    for r in sim.requests.values()]
        sessions = {s.session_id: {"close_calls": s.close_calls, "status": s.status}
                    for s in sim.sessions.values()}
        accepted = dict(sim.accepted_at)
    return {"requests": requests, "sessions": sessions, "accepted_at": accepted,
            "calls": sim.calls_by_endpoint()}


def uppzy_report(sim: UppzySimulator) -> dict[str, Any]:
    """Per request: its session and monotonic times; no question or answer text."""
    keep = ("session_id", "created_at", "completed_at", "delivered_at", "status_polls", "mode")
    return {"requests": [{k: r[k] for k in keep} for r in sim.requests_for()],
            "calls": sim.calls_by_endpoint()}


def parse_seconds(text: str) -> Seconds:
    """``0``, ``2.5`` or a uniform range ``5-30``."""
    low, sep, high = text.partition("-")
    return (float(low), float(high)) if sep else float(low)


def serve(kind: str, answer_time: str, short_answers: bool = False) -> None:
    sim: BenchZendesk | UppzySimulator
    if kind == "zendesk":
        sim = BenchZendesk()
    else:
        spec = parse_seconds(answer_time)
        # The same time for both modes: the daemon asks asynchronously, the baseline waits.
        extra: dict[str, Any] = {"answer_fn": short_answer} if short_answers else {}
        sim = SoakUppzy(api_keys={API_KEY: "ok"}, answer_time=spec, sync_latency=spec, **extra)
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
    if name == "fault":
        fault = Fault(**command["fault"])
        if command.get("for_seconds") is not None:
            fault.until = time.monotonic() + float(command["for_seconds"])
        sim.add_fault(fault)
        return {"ok": True}
    if name == "clear_faults":
        sim.clear_faults()
        return {"ok": True}
    if isinstance(sim, BenchZendesk):
        soak = _handle_soak_zendesk(sim, name, command)
        if soak is not None:
            return soak
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
        if name == "soak_report" and isinstance(sim, SoakUppzy):
            return uppzy_soak_report(sim)
    return {"error": f"unknown command {name!r}"}


def _handle_soak_zendesk(sim: BenchZendesk, name: str, command: dict[str, Any]
                         ) -> dict[str, Any] | None:
    """The soak's Zendesk commands; None for a command that is not one of them."""
    if name == "ticket":
        ticket_id = sim.soak_ticket(
            sim.requesters[int(command["requester"])], command["body"],
            command.get("subject") or "Help needed", command.get("via_channel") or "email",
            list(command.get("tags") or []), command.get("ticket_id"))
        return {"ok": True, "ticket": ticket_id}
    if name == "comment":
        with sim.lock:
            requester = sim.tickets[int(command["ticket"])].requester_id
        sim.add_comment(int(command["ticket"]), requester, command["body"])
        return {"ok": True}
    if name == "tag":
        sim.add_tags(int(command["ticket"]), *command["tags"])
        return {"ok": True}
    if name == "solve":
        sim.solve(int(command["ticket"]))
        return {"ok": True}
    if name == "rate_limit":
        with sim.lock:
            sim.rate_limit = command.get("per_minute")
        return {"ok": True}
    if name == "soak_report":
        return sim.soak_report()
    return None


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("zendesk", "uppzy"))
    parser.add_argument("--answer-time", default="0",
                        help="Uppzy answer time in seconds: 0, 2.5 or a range 5-30")
    parser.add_argument("--short-answers", action="store_true",
                        help="Uppzy answers with a short text instead of echoing the question")
    args = parser.parse_args()
    serve(args.kind, args.answer_time, args.short_answers)


if __name__ == "__main__":
    main()
