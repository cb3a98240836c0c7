"""Crash and fault soak: random kills, pauses and faults under a steady load; then the damage.

The real daemon (``python -m connector run``, 1 instance on SQLite or N on a fresh schema of
PostgreSQL behind a ``TcpProxy`` that can be cut) runs against the bench Zendesk and Uppzy
simulators (``bench/sims.py``, each in its own process). While new tickets, follow-ups, feedback
tags and resolutions arrive at a steady rate, an event loop fires random events: SIGKILL of an
instance (restarted), SIGSTOP past its lease (then SIGCONT), database cuts, per-endpoint helpdesk
outages, Uppzy down or rate limiting, malformed 200 answers, a helpdesk limit of 30 requests a
minute, and customer messages with 200 KB of spaces, pasted marker text or over-long vendor
strings. A last phase restarts the instances with a short ``answer_timeout`` and takes them all
down for longer than it.

Then every fault is cleared, every instance is up, and the run settles. The verdict comes from the
simulators' records, never from the daemon's database: customer messages left without a note
(lost), notes posted twice, Uppzy sessions closed twice, feedback sent twice, closes and feedback
that never came, fallback notes; with the events under way when each went wrong. Exit 1 when
anything was lost or duplicated.

    python bench/soak.py --setup sqlite:1 --events 300
    python bench/soak.py --setup pg:3 --events 300 --json /tmp/soak.json
    python bench/soak.py --setup pg:3 --events 60 --kinds kill,db_cut   # one suspect at a time

A bench tool, not a CI test. Everything listens on 127.0.0.1; every process and proxy started
here is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from run import ADAPTER, API_KEY, BOT_EMAIL, ZD_TOKEN, SimProcess, _end, machine, wait_until
from sqlalchemy import create_engine, text

from connector.testing.tcp_proxy import TcpProxy

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LEASE_TTL = 3.0  # engine.lease_ttl: the smallest the config accepts
HTML = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
HELPDESK_ENDPOINTS = ("ticket_comments", "ticket_update", "ticket_show", "incremental_tickets")
HELPDESK_READS = ("ticket_comments", "ticket_show", "incremental_tickets")
SESSION = re.compile(rf"^{ADAPTER}-(\d+)(?:-(\d+))?$")
LOST_WINDOW = 30.0  # seconds after a lost turn's first message whose events are suspects
LONG_ID = 10**39 + 7  # 40 digits: past any integer column, within the store's 128 characters
KINDS = ("kill", "stop", "db_cut", "helpdesk_outage", "uppzy_down", "uppzy_429",
         "helpdesk_html", "uppzy_html", "rate_limit", "spaces_200kb", "marker_paste",
         "long_strings")
TIMEOUT_KINDS = ("kill", "stop", "downtime")  # the short-answer_timeout phase
FAULTS = ("db_cut", "helpdesk_outage", "uppzy_down", "uppzy_429", "helpdesk_html", "uppzy_html",
          "rate_limit")  # the kinds that last: at most --faults-at-once of them under way


# ----- the daemon instances -------------------------------------------------------------------
@dataclass
class Instance:
    """One ``connector run`` process in a slot that keeps its instance id across restarts
    (as a systemd template unit would)."""

    slot: int
    config: Path
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_level: str = "warning"
    stopped: bool = False
    killed: bool = False  # down on purpose until its restart
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        if self.alive:
            return
        env = {**os.environ, "BENCH_INSTANCE": f"soak-{self.slot}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--config", str(self.config),
             "--log-level", self.log_level],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
            stderr=(self.workdir / f"daemon-{self.slot}.log").open("ab"),
        )
        self.pids.append(self.proc.pid)
        self.stopped = self.killed = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)
        self.stopped = sig == signal.SIGSTOP
        self.killed = self.killed or sig == signal.SIGKILL

    def end(self) -> None:
        """SIGCONT first (a stopped process cannot handle SIGTERM), then SIGTERM, then KILL."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            _end(self.proc, grace=15)
        self.stopped = False


# ----- the run --------------------------------------------------------------------------------
@dataclass
class Event:
    kind: str
    start: float
    end: float
    detail: str = ""


@dataclass
class Pending:
    """Something to undo or finish at ``at``: restore a cut, SIGCONT, restart, clear a limit."""

    at: float
    kind: str
    action: Callable[[], None]
    event: Event


class Soak:
    def __init__(self, args: argparse.Namespace, store: str, count: int, workdir: Path,
                 stack: ExitStack) -> None:
        self.args, self.store, self.workdir = args, store, workdir
        self.rng = random.Random(args.seed)
        self.zendesk = stack.enter_context(_sim("zendesk", args.answer_time, workdir))
        self.uppzy = stack.enter_context(_sim("uppzy", args.answer_time, workdir,
                                              "--short-answers"))
        self.zendesk.call("users", n=args.requesters)
        self.proxy: TcpProxy | None = None
        self.db_url = f"sqlite:///{workdir / 'connector.db'}"
        if store == "pg":
            self.db_url = stack.enter_context(_pg_schema(args.pg))
            target = urlsplit(args.pg)
            self.proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
            stack.callback(self.proxy.stop)
            self.db_url = _through(self.db_url, self.proxy.port)
        self.config = workdir / "config.yaml"
        self.write_config(args.answer_timeout)
        self.instances = [Instance(n, self.config, workdir, log_level=args.log_level)
                          for n in range(count)]
        stack.callback(self.end_instances)
        self.events: list[Event] = []
        self.pending: list[Pending] = []
        self.unexpected_exits: list[dict[str, Any]] = []
        self.tickets: dict[int, dict[str, Any]] = {}  # ticket -> {"open", "tagged_at"}
        self.next_q = 0
        self.created = Counter[str]()
        self.last_report: dict[str, Any] = {}
        self.phase = "faults"

    # ----- set-up ------------------------------------------------------------------------
    def write_config(self, answer_timeout: str) -> None:
        config = {
            "uppzy": {"base_url": self.uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                      "poll_interval": "0.5s", "answer_timeout": answer_timeout},
            "database": {"url": self.db_url},
            "engine": {"workers": 4, "tick": self.args.tick, "batch_size": 32,
                       "lease_ttl": f"{LEASE_TTL:g}s", "instance_id": "${BENCH_INSTANCE}"},
            "ops": {"enabled": False},
            "adapters": [{
                "name": ADAPTER, "type": "zendesk", "url": self.zendesk.url,
                "auth": {"email": BOT_EMAIL, "api_token": ZD_TOKEN},
                "poll_interval": "0.5s", "start_from": "10m",
            }],
        }
        self.config.write_text(yaml.safe_dump(config))

    def start_instances(self) -> None:
        for instance in self.instances:
            instance.start()
        wait_until(self._polled, 60, "the daemon's first poll", every=0.2)

    def _polled(self) -> bool:
        for instance in self.instances:
            if not instance.alive:
                raise RuntimeError(f"instance {instance.slot} exited with "
                                   f"{instance.proc and instance.proc.returncode} at start; see "
                                   f"{self.workdir / f'daemon-{instance.slot}.log'}")
        return self.zendesk.call("progress")["calls"].get("incremental_tickets", 0) > 0

    def end_instances(self) -> None:
        for instance in self.instances:
            instance.end()

    # ----- the workload ------------------------------------------------------------------
    def message(self, extra: str = "") -> str:
        """A customer message carrying its soak id, ``[q<n>]``, which the report follows."""
        self.next_q += 1
        return f"[q{self.next_q}] How do I reset my password? {extra}".rstrip()

    def new_ticket(self, body: str | None = None, **options: Any) -> int:
        answer = self.zendesk.call(
            "ticket", requester=self.rng.randrange(self.args.requesters),
            body=body or self.message(), subject=options.pop("subject", "Password"), **options)
        ticket = int(answer["ticket"])
        self.tickets[ticket] = {"open": True, "tagged_at": None}
        self.created["tickets"] += 1
        return ticket

    def follow_up(self, body: str | None = None, ticket: int | None = None) -> int | None:
        """A customer reply, mostly on an open ticket; on a solved one it reopens it."""
        choices = list(self.tickets) if ticket is None else [ticket]
        if not choices:
            return None
        ticket = ticket if ticket is not None else self.rng.choice(choices)
        self.zendesk.call("comment", ticket=ticket, body=body or self.message())
        self.tickets[ticket]["open"] = True
        self.created["follow-ups"] += 1
        return ticket

    def workload_step(self, dt: float) -> None:
        """New tickets, follow-ups, feedback tags and resolutions, each a Poisson stream."""
        rate = self.args.rate
        for what, per_second in (("ticket", rate), ("follow", rate / 2), ("tag", rate / 5),
                                 ("solve", rate / 3)):
            if self.rng.random() >= per_second * dt:
                continue
            if what == "ticket":
                self.new_ticket()
            elif what == "follow":
                self.follow_up()
            else:
                self._agent_action(what)

    def _agent_action(self, what: str) -> None:
        """An agent tags ``ai_good`` or resolves a ticket that has been open a few seconds."""
        candidates = [t for t, s in self.tickets.items() if s["open"]
                      and (what == "solve" or s["tagged_at"] is None)]
        if not candidates:
            return
        ticket = self.rng.choice(candidates[:-5] or candidates)  # not the newest ones
        if what == "tag":
            self.zendesk.call("tag", ticket=ticket, tags=["ai_good"])
            self.tickets[ticket]["tagged_at"] = time.monotonic()
            self.created["feedback tags"] += 1
        else:
            self.zendesk.call("solve", ticket=ticket)
            self.tickets[ticket]["open"] = False
            self.created["resolutions"] += 1

    # ----- events ------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        wanted = self.args.kinds.split(",") if self.args.kinds else list(KINDS)
        unknown = set(wanted) - set(KINDS) - {"downtime"}
        if unknown:
            raise SystemExit(f"unknown event kinds: {', '.join(sorted(unknown))}")
        if self.proxy is None:
            wanted = [k for k in wanted if k != "db_cut"]
        if self.phase == "timeout":
            wanted = [k for k in wanted if k in TIMEOUT_KINDS] + ["downtime"]
        return wanted

    def fire(self) -> bool:
        """One random event that can happen now: a fault only while fewer than
        ``--faults-at-once`` are under way, else the daemon never gets a window to recover; a
        stop only of a running instance; a kill or downtime only of a live one."""
        busy = [p.kind for p in self.pending]
        faults = sum(1 for k in busy if k in FAULTS)
        running, alive = self._running(), [i for i in self.instances if i.alive]
        kinds = [k for k in self.kinds()
                 if not (k in FAULTS and (k in busy or faults >= self.args.faults_at_once))
                 and not (k == "stop" and not running)
                 and not (k in ("kill", "downtime") and not alive)]
        if not kinds:
            return False
        kind = self.rng.choice(kinds)
        now = time.monotonic()
        event = Event(kind, now, now)
        getattr(self, f"_event_{kind}")(event)
        self.events.append(event)
        return True

    def later(self, event: Event, seconds: float, action: Callable[[], None]) -> None:
        event.end = time.monotonic() + seconds
        self.pending.append(Pending(event.end, event.kind, action, event))

    def run_pending(self, everything: bool = False) -> None:
        now = time.monotonic()
        for item in sorted(self.pending, key=lambda p: p.at):
            if everything or item.at <= now:
                self.pending.remove(item)
                item.action()
                item.event.end = max(item.event.start, time.monotonic())

    def _running(self) -> list[Instance]:
        return [i for i in self.instances if i.alive and not i.stopped]

    def _event_kill(self, event: Event) -> None:
        instance = self.rng.choice([i for i in self.instances if i.alive])
        instance.signal(signal.SIGKILL)
        event.detail = f"instance {instance.slot}"
        self.later(event, self.rng.uniform(0, 1), instance.start)

    def _event_stop(self, event: Event) -> None:
        instance = self.rng.choice(self._running())
        instance.signal(signal.SIGSTOP)
        seconds = self.rng.uniform(1.5, 3) * LEASE_TTL
        event.detail = f"instance {instance.slot} for {seconds:.1f}s"
        self.later(event, seconds, lambda: instance.signal(signal.SIGCONT))

    def _event_downtime(self, event: Event) -> None:
        """Every instance down for longer than answer_timeout, with questions in flight."""
        for _ in range(3):
            self.new_ticket()
        time.sleep(0.5)  # let them be asked
        for instance in self.instances:
            instance.signal(signal.SIGKILL)
        seconds = self.rng.uniform(1.5, 2.5) * _seconds(self.args.short_answer_timeout)
        event.detail = f"all instances for {seconds:.1f}s"
        self.later(event, seconds, lambda: [i.start() for i in self.instances])

    def _event_db_cut(self, event: Event) -> None:
        assert self.proxy is not None
        self.proxy.cut()
        seconds = self.rng.uniform(*self.args.db_cut)
        event.detail = f"{seconds:.1f}s"
        self.later(event, seconds, self.proxy.restore)

    def _fault(self, event: Event, sim: SimProcess, seconds: float, detail: str,
               **fault: Any) -> None:
        sim.call("fault", fault={"times": None, **fault}, for_seconds=seconds)
        event.detail = f"{detail} for {seconds:.0f}s"
        self.later(event, seconds, lambda: None)  # the simulator ends it by itself

    def _event_helpdesk_outage(self, event: Event) -> None:
        endpoint = self.rng.choice(HELPDESK_ENDPOINTS)
        self._fault(event, self.zendesk, self.rng.uniform(*self.args.outage), f"{endpoint} 503",
                    endpoint=endpoint, status=503)

    def _event_uppzy_down(self, event: Event) -> None:
        self._fault(event, self.uppzy, self.rng.uniform(*self.args.outage), "every endpoint 503",
                    endpoint="", status=503)

    def _event_uppzy_429(self, event: Event) -> None:
        retry_after = float(self.rng.randint(1, 5))
        self._fault(event, self.uppzy, self.rng.uniform(5, 30),
                    f"429 Retry-After {retry_after:g}", endpoint="", status=429,
                    retry_after=retry_after, probability=0.7)

    def _event_helpdesk_html(self, event: Event) -> None:
        endpoint = self.rng.choice(HELPDESK_READS)
        self._fault(event, self.zendesk, self.rng.uniform(10, 40), f"{endpoint} 200 HTML",
                    endpoint=endpoint, status=200, body=HTML, probability=0.5)

    def _event_uppzy_html(self, event: Event) -> None:
        self._fault(event, self.uppzy, self.rng.uniform(10, 40), "chat_status 200 HTML",
                    endpoint="chat_status", status=200, body=HTML, probability=0.5)

    def _event_rate_limit(self, event: Event) -> None:
        self.zendesk.call("rate_limit", per_minute=30)
        seconds = self.rng.uniform(30, 90)
        event.detail = f"30 requests/minute for {seconds:.0f}s"
        self.later(event, seconds, lambda: self.zendesk.call("rate_limit", per_minute=None))

    def _event_spaces_200kb(self, event: Event) -> None:
        body = self.message(" " * 200_000 + "Is anyone there?")
        if self.rng.random() < 0.5:
            event.detail = f"new ticket {self.new_ticket(body)}"
        else:
            event.detail = f"follow-up on {self.follow_up(body)}"

    def _event_marker_paste(self, event: Event) -> None:
        """The customer quotes our last note's marker (or a made-up one) in a reply."""
        refs = {int(t): [i["ref"] for i in v["timeline"] if i["k"] == "note" and i["ref"]]
                for t, v in self.last_report.get("tickets", {}).items()}
        quoted = [(t, r[-1]) for t, r in refs.items() if r and t in self.tickets]
        ticket, ref = self.rng.choice(quoted) if quoted else (None, "req_made_up")
        body = self.message(f"You wrote: 'AI draft, Uppzy ref {ref}' but it did not work.")
        event.detail = f"follow-up on {self.follow_up(body, ticket)} quoting {ref}"

    def _event_long_strings(self, event: Event) -> None:
        long_id = self.rng.random() < 0.5
        ticket = self.new_ticket(
            subject="S" * 5000, via_channel="channel-" + "x" * 500, tags=["t" * 300],
            ticket_id=LONG_ID + self.created["long ids"] if long_id else None)
        self.created["long ids"] += long_id
        event.detail = f"ticket {ticket}: 500-character channel, 5,000-character subject, " \
                       f"300-character tag" + (", 40-digit id" if long_id else "")

    # ----- watching ----------------------------------------------------------------------
    def check_instances(self) -> None:
        """An instance that died without being killed is a finding; it is restarted."""
        for instance in self.instances:
            if instance.alive or instance.killed or instance.proc is None:
                continue
            self.unexpected_exits.append({"slot": instance.slot, "at": time.monotonic(),
                                          "code": instance.proc.returncode})
            instance.start()

    def reports(self) -> tuple[dict[str, Any], dict[str, Any]]:
        zd, up = self.zendesk.call("soak_report"), self.uppzy.call("soak_report")
        self.last_report = zd
        return zd, up

    # ----- phases ------------------------------------------------------------------------
    def drive(self) -> float:
        """The event loop; returns when the events are done or time is up."""
        started = time.monotonic()
        timeout_events = self.args.timeout_events
        total = self.args.events
        next_event = started + 2.0
        last, last_report = started, 0.0
        fired = 0
        while fired < total and time.monotonic() - started < self.args.max_seconds:
            now = time.monotonic()
            self.workload_step(now - last)
            last = now
            self.run_pending()
            self.check_instances()
            if now - last_report > 5:
                self.reports()
                last_report = now
            if self.phase == "faults" and timeout_events and fired >= total - timeout_events:
                self.enter_timeout_phase()
                next_event = time.monotonic() + 1.0
            if time.monotonic() >= next_event and self.fire():
                fired += 1
                next_event = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.args.interval
                if fired % 25 == 0:
                    _say(f"  {fired}/{total} events, {self.created['tickets']} tickets")
            time.sleep(0.05)
        return time.monotonic() - started

    def enter_timeout_phase(self) -> None:
        """All faults over, every instance restarted with a short answer_timeout."""
        _say(f"  phase 2: answer_timeout {self.args.short_answer_timeout}")
        self.clear_everything()
        self.phase = "timeout"
        self.write_config(self.args.short_answer_timeout)
        for instance in self.instances:
            instance.end()
            instance.start()

    def clear_everything(self) -> None:
        self.run_pending(everything=True)
        for sim in (self.zendesk, self.uppzy):
            sim.call("clear_faults")
        self.zendesk.call("rate_limit", per_minute=None)
        if self.proxy is not None:
            self.proxy.restore()
        for instance in self.instances:
            if instance.stopped:
                instance.signal(signal.SIGCONT)
            if not instance.alive:
                instance.start()

    def settle(self) -> tuple[dict[str, Any], float]:
        """Wait until nothing is outstanding and nothing moved for ``--quiet`` seconds."""
        self.clear_everything()
        started = time.monotonic()
        deadline = started + self.args.settle
        quiet_since, last_signature = time.monotonic(), None
        while True:
            self.check_instances()
            zd, up = self.reports()
            verdict = analyse(zd, up, self.tickets, self.events, started)
            signature = (verdict["notes"], sum(up["calls"].values()))
            if signature != last_signature:
                quiet_since, last_signature = time.monotonic(), signature
            outstanding = verdict["lost_turns"] + verdict["missing_closes"] + \
                verdict["missing_feedback"]
            now = time.monotonic()
            if (outstanding == 0 and now - quiet_since >= self.args.quiet) or now >= deadline:
                return verdict, now - started
            time.sleep(1.0)


# ----- the verdict ----------------------------------------------------------------------------
def analyse(zd: dict[str, Any], up: dict[str, Any], tickets: dict[int, dict[str, Any]],
            events: list[Event], settle_start: float) -> dict[str, Any]:
    """Count losses and duplicates from the simulators' records alone.

    A customer turn is lost when customer messages are left with neither a note of ours nor a
    resolution after them. A note is a duplicate when another note carries the same marker ref,
    or when every message its question asked had already been answered by an earlier note. The
    messages a note answers are those whose soak id its Uppzy request carried.
    """
    requests = {r["id"]: r for r in up["requests"]}
    failures: dict[str, list[dict[str, Any]]] = defaultdict(list)
    refs = Counter[str]()
    answered: dict[int, str] = {}  # soak message id -> the ref of the note that answered it
    notes = fallbacks = 0
    for tid, ticket in zd["tickets"].items():
        tail: list[dict[str, Any]] = []
        for item in ticket["timeline"]:
            if item["k"] == "customer":
                tail.append(item)
                continue
            tail = []
            if item["k"] != "note":
                continue
            notes += 1
            fallbacks += item["fallback"]
            if item["fallback"]:
                failures["fallback notes"].append(_item(tid, item["at"] - 150, item["at"],
                                                        ref=item["ref"]))
            if item["public"]:
                failures["public posts"].append(_item(tid, item["at"] - 5, item["at"]))
            ref = item["ref"]
            refs[ref] += 1
            asked = requests.get(ref, {}).get("q", [])
            first = [answered[q] for q in asked if q in answered]
            if refs[ref] > 1 or (asked and len(first) == len(asked)):
                failures["duplicate drafts"].append(
                    _item(tid, item["at"] - 10, item["at"], ref=ref, first=sorted(set(first))))
            for q in asked:
                answered.setdefault(q, ref)
        if tail:  # suspects: what happened while the turn should have been handled
            since = tail[0]["at"]
            failures["lost turns"].append(_item(tid, since, min(settle_start, since + LOST_WINDOW),
                                                messages=[q for m in tail for q in m["q"]]))
    _sessions(up, zd, failures)
    _feedback(up, zd, tickets, failures)
    for items in failures.values():
        for item in items:
            item["during"] = sorted({e.kind for e in events
                                     if e.start <= item["until"] and e.end + LEASE_TTL >=
                                     item["since"]})
    return {
        "notes": notes, "fallback_notes": fallbacks,
        "lost_turns": len(failures["lost turns"]),
        "lost_messages": sum(len(i["messages"]) for i in failures["lost turns"]),
        "duplicate_drafts": len(failures["duplicate drafts"]),
        "duplicate_closes": sum(i["extra"] for i in failures["duplicate closes"]),
        "missing_closes": len(failures["missing closes"]),
        "duplicate_feedback": sum(i["extra"] for i in failures["duplicate feedback"]),
        "missing_feedback": len(failures["missing feedback"]),
        "public_posts": len(failures["public posts"]),
        "failures": dict(failures),
    }


def _item(ticket: str, since: float, until: float, **more: Any) -> dict[str, Any]:
    return {"ticket": ticket, "since": since, "until": until, **more}


def _sessions(up: dict[str, Any], zd: dict[str, Any],
              failures: dict[str, list[dict[str, Any]]]) -> None:
    """Each session closed at most once; every session of a ticket closed but the one in use,
    and that one too when the ticket ended resolved."""
    by_ticket: dict[str, list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    for session_id, session in up["sessions"].items():
        match = SESSION.match(session_id)
        if match:
            by_ticket[match[1]].append((int(match[2] or 1), session_id, session))
        times = up["accepted_at"].get(f"close:{session_id}", [])
        if session["close_calls"] > 1:
            failures["duplicate closes"].append(_item(
                match[1] if match else "?", min(times, default=0) - 5, max(times, default=0),
                session=session_id, extra=session["close_calls"] - 1))
    for ticket, sessions in by_ticket.items():
        sessions.sort()
        status = zd["tickets"].get(ticket, {}).get("status")
        for n, (_, session_id, session) in enumerate(sessions):
            should = n < len(sessions) - 1 or status in ("solved", "closed")
            if should and session["status"] != "closed":
                failures["missing closes"].append(_item(ticket, 0, 0, session=session_id))


def _feedback(up: dict[str, Any], zd: dict[str, Any], tickets: dict[int, dict[str, Any]],
              failures: dict[str, list[dict[str, Any]]]) -> None:
    """Feedback at most once per request and per ticket; expected on every ticket tagged after
    a real draft of ours was on it."""
    rated: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in up["requests"]:
        match = SESSION.match(request["session_id"])
        times = up["accepted_at"].get(f"fb:{request['id']}", [])
        if request["feedback_calls"] and match:
            rated[match[1]].append(request)
        if request["feedback_calls"] > 1:
            failures["duplicate feedback"].append(_item(
                match[1] if match else "?", min(times) - 5, max(times), request=request["id"],
                extra=request["feedback_calls"] - 1))
    for ticket, requests in rated.items():
        if len(requests) > 1:
            times = [t for r in requests for t in up["accepted_at"].get(f"fb:{r['id']}", [])]
            failures["duplicate feedback"].append(_item(
                ticket, min(times) - 5, max(times), extra=len(requests) - 1,
                requests=[r["id"] for r in requests]))
    for ticket, state in tickets.items():
        tagged = state["tagged_at"]
        timeline = zd["tickets"].get(str(ticket), {}).get("timeline", [])
        drafted = any(i["k"] == "note" and not i["fallback"] and i["at"] < tagged
                      for i in timeline) if tagged else False
        if drafted and str(ticket) not in rated:
            failures["missing feedback"].append(_item(str(ticket), tagged, tagged + 1))


# ----- helpers --------------------------------------------------------------------------------
@contextmanager
def _sim(kind: str, answer_time: str, workdir: Path, *extra: str) -> Iterator[SimProcess]:
    sim = SimProcess(kind, answer_time, workdir / f"{kind}.log", *extra)
    try:
        yield sim
    finally:
        sim.stop()


@contextmanager
def _pg_schema(url: str) -> Iterator[str]:
    """A fresh schema of the database at ``url``, dropped afterwards; yields its URL."""
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _through(url: str, port: int) -> str:
    """The same database URL, reached through the proxy on 127.0.0.1:``port``."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}" if user else
                                     f"127.0.0.1:{port}"))


def _seconds(text_value: str) -> float:
    return float(text_value.rstrip("s"))


def _range(text_value: str) -> tuple[float, float]:
    low, _, high = text_value.partition("-")
    return float(low), float(high or low)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ----- output ---------------------------------------------------------------------------------
ROWS = (("lost turns (messages)", "lost_turns"), ("duplicate drafts", "duplicate_drafts"),
        ("duplicate session closes", "duplicate_closes"),
        ("duplicate feedback", "duplicate_feedback"), ("missing session closes", "missing_closes"),
        ("missing feedback", "missing_feedback"), ("public posts", "public_posts"),
        ("fallback notes", "fallback_notes"), ("notes posted", "notes"))


def render(result: dict[str, Any]) -> str:
    v = result["verdict"]
    lines = [f"{result['setup']}: {result['events']} events in {result['seconds']:.0f}s "
             f"(+{result['settle_seconds']:.0f}s settling); {machine()}",
             "", "| | count |", "|---|---|"]
    for label, key in ROWS:
        value = f"{v[key]} ({v['lost_messages']})" if key == "lost_turns" else str(v[key])
        lines.append(f"| {label} | {value} |")
    lines.append(f"| unexpected instance exits | {len(result['unexpected_exits'])} |")
    lines += ["", "| event | count |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(result["events_by_kind"].items())]
    lines.append(f"| workload | {', '.join(f'{n} {k}' for k, n in result['created'].items())} |")
    blame = result["during"]
    if blame:
        lines += ["", "Events under way when each failure happened (a failure counts once for "
                  "every kind under way):", "", "| failure | events under way |", "|---|---|"]
        for name, kinds in blame.items():
            lines.append(f"| {name} ({len(v['failures'][name])}) | " + ", ".join(
                f"{k} {n}" for k, n in kinds.most_common()) + " |")
    return "\n".join(lines)


def run_setup(args: argparse.Namespace, spec: str) -> dict[str, Any]:
    store, _, count_text = spec.partition(":")
    if store not in ("sqlite", "pg"):
        raise SystemExit(f"--setup: sqlite:1 or pg:N, not {spec!r}")
    count = int(count_text or 1)
    if store == "sqlite" and count != 1:
        raise SystemExit("--setup sqlite runs one instance (SQLite is for one)")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    _say(f"soak {spec}: {args.events} events, logs in {workdir}")
    with ExitStack() as stack:
        soak = Soak(args, store, count, workdir, stack)
        soak.start_instances()
        seconds = soak.drive()
        _say(f"  settling (up to {args.settle:.0f}s)")
        verdict, settle_seconds = soak.settle()
        pids = [pid for i in soak.instances for pid in i.pids]
        pids += [soak.zendesk.proc.pid, soak.uppzy.proc.pid]
    events = Counter(e.kind for e in soak.events)
    during = {name: Counter(k for item in items for k in item["during"])
              for name, items in verdict["failures"].items() if items}
    return {
        "setup": f"{'PostgreSQL' if store == 'pg' else 'SQLite'} x{count}", "spec": spec,
        "events": len(soak.events), "events_by_kind": dict(events),
        "kills_stops_faults": len(soak.events), "seconds": seconds,
        "settle_seconds": settle_seconds, "created": dict(soak.created), "verdict": verdict,
        "during": during, "unexpected_exits": soak.unexpected_exits, "pids": pids,
        "event_log": [e.__dict__ for e in soak.events], "workdir": str(workdir),
    }


def failed(result: dict[str, Any]) -> bool:
    v = result["verdict"]
    return any(v[k] for k in ("lost_turns", "duplicate_drafts", "duplicate_closes",
                              "duplicate_feedback", "missing_closes", "missing_feedback",
                              "public_posts"))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every process and proxy is still stopped."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", default="sqlite:1", help="sqlite:1 or pg:N, comma-separated")
    parser.add_argument("--events", type=int, default=300, help="kills, stops and faults in all")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="the event loop ends by then even with events left")
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between events")
    parser.add_argument("--rate", type=float, default=1.0, help="new tickets per second "
                        "(follow-ups at half, tags at a fifth, resolutions at a third of it)")
    parser.add_argument("--kinds", help=f"only these events, comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--faults-at-once", type=int, default=1,
                        help="most lasting faults (outages, cuts, 429s, HTML, rate limit) "
                             "under way together; kills, stops and messages come on top")
    parser.add_argument("--outage", type=_range, default=(10.0, 90.0),
                        help="seconds of an Uppzy or helpdesk-endpoint outage, a range")
    parser.add_argument("--db-cut", type=_range, default=(1.0, 8.0),
                        help="seconds of a database cut, a range")
    parser.add_argument("--answer-time", default="0.2-2", help="Uppzy answer time, seconds")
    parser.add_argument("--answer-timeout", default="2m", help="uppzy.answer_timeout")
    parser.add_argument("--timeout-events", type=int,
                        help="events of the last phase (short answer_timeout, downtime past "
                             "it); default a tenth of --events")
    parser.add_argument("--short-answer-timeout", default="5s",
                        help="uppzy.answer_timeout of the last phase")
    parser.add_argument("--tick", default="0.2s", help="engine.tick")
    parser.add_argument("--requesters", type=int, default=50)
    parser.add_argument("--settle", type=float, default=180.0,
                        help="longest wait at the end for outstanding work")
    parser.add_argument("--quiet", type=float, default=8.0,
                        help="seconds without activity that end settling")
    parser.add_argument("--pg", default=os.environ.get("CONNECTOR_TEST_DATABASE_URL", PG_DEFAULT))
    parser.add_argument("--seed", type=int, help="random seed (events, workload)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (logs, db)")
    parser.add_argument("--log-level", default="warning",
                        help="the daemons' log level (info traces each turn, for a loss or a "
                             "repeat to be followed; use with --keep)")
    args = parser.parse_args()
    if args.timeout_events is None:
        args.timeout_events = args.events // 10
    results = []
    signal.signal(signal.SIGTERM, _interrupt)
    for spec in args.setup.split(","):
        result = run_setup(args, spec)
        results.append(result)
        print(render(result) + "\n", flush=True)
        if not args.keep:
            shutil.rmtree(result["workdir"], ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    sys.exit(1 if any(failed(r) for r in results) else 0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
