"""The whole pipeline against a real Request Tracker 5, in-process and as a daemon killed at will.

Customers write the way they really reach RT: over REST2 as unprivileged users and by e-mail
through the mail gateway; staff reply and comment as RT's privileged ``agent``, the same user the
connector runs as, so only our marker tells our comments from theirs. Every count is read back
from RT itself (the agent's view of the history) and every privacy claim with the customer's own
credentials.

One RT serves the whole test session, so each connector polls once with ``start_from: 0s``
before the test writes anything: that puts its cursor after everything older tests left behind,
and only this test's tickets are its work.
"""

from __future__ import annotations

import itertools
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rt_fixture import AGENT, RTServer, RTUser
from sqlmodel import Session, select
from support import API_KEY, wait_for

from connector.config import parse_config
from connector.engine.runtime import Runtime
from connector.store.models import Turn
from connector.testing.uppzy_sim import UppzySimulator

MARKER = "AI draft, Uppzy ref "
STAFF = "[staff]"  # in every staff text: a question to Uppzy must never contain it
INTERNAL = f"{STAFF} internal"  # in staff comments: a customer must never see it
RT_SECOND = 1.1  # RT's timestamps have 1 s resolution; the epoch must lie in an earlier second
_serial = itertools.count(1)


def unique(what: str) -> str:
    return f"{what} {next(_serial)}-{time.time_ns()}"


# ----- setup -----------------------------------------------------------------------------------
def rt_config(tmp_path: Path, uppzy: UppzySimulator, rt_server: RTServer) -> dict[str, Any]:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": "0.5s", "answer_timeout": "20s"},
        "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
        "adapters": [{"name": "rt", "type": "rt", "url": rt_server.url,
                      "auth": {"token": rt_server.agent_token},
                      "poll_interval": "0.5s", "start_from": "0s"}],
        "engine": {"tick": "0.1s", "workers": 8},
        "ops": {"listen": "127.0.0.1:0"},  # several test daemons may run at once
    }


@pytest.fixture
def engine(tmp_path: Path, uppzy: UppzySimulator, rt_server: RTServer) -> Iterator[Runtime]:
    """An engine whose cursor already stands after everything RT held before the test."""
    built = Runtime(parse_config(rt_config(tmp_path, uppzy, rt_server)))
    built.start()
    built.poll("rt")
    time.sleep(RT_SECOND)
    yield built
    built.shutdown(grace=2)
    built.db.dispose()


@pytest.fixture
def customers(rt_server: RTServer) -> list[RTUser]:
    """Unprivileged users with passwords, so their own view of a ticket can be checked."""
    tag = time.time_ns()
    return [rt_server.create_user(f"cust{tag}-{i}", f"cust{tag}-{i}@example.org")
            for i in range(3)]


class Desk:
    """Plays the people around the tickets and remembers who owns which ticket."""

    def __init__(self, rt: RTServer) -> None:
        self.rt = rt
        self.owner: dict[str, RTUser] = {}

    def open(self, customer: RTUser, text: str, *, by_mail: bool) -> str:
        if by_mail:
            ticket = self.rt.mail_in(text, sender=customer.email, subject=unique("Mail"))
        else:
            ticket = self.rt.create_ticket(unique("Web"), text, user=customer,
                                           requestor=customer.email)
        self.owner[ticket] = customer
        return ticket

    def write(self, ticket: str, text: str, *, by_mail: bool) -> None:
        if by_mail:
            self.rt.mail_reply(ticket, text, sender=self.owner[ticket].email)
        else:
            self.rt.customer_reply(ticket, text, user=self.owner[ticket])

    def drafts(self, ticket: str) -> list[dict[str, Any]]:
        """Our comments, as staff see them: Comments by the connector's user with the marker."""
        return [t for t in self.rt.history(ticket, user=AGENT)
                if t["Type"] == "Comment" and t["Creator"] == AGENT.name and MARKER in t["Content"]]

    def draft_counts(self) -> Counter[str]:
        return +Counter({ticket: len(self.drafts(ticket)) for ticket in self.owner})

    def latest_customer_message(self, ticket: str) -> str:
        name = self.owner[ticket].name
        return [t["id"] for t in self.rt.history(ticket, user=AGENT)
                if t["Type"] in ("Create", "Correspond") and t["Creator"] == name][-1]

    def assert_customers_see_no_comment(self) -> None:
        for ticket, customer in self.owner.items():
            seen = self.rt.history(ticket, user=customer)
            assert seen, f"{customer.name} cannot see their own ticket {ticket}"
            assert "Comment" not in [t["Type"] for t in seen], ticket
            assert not any(MARKER in t["Content"] or INTERNAL in t["Content"] for t in seen), ticket


def turns(engine: Runtime) -> list[Turn]:
    with Session(engine.db) as db:
        return list(db.exec(select(Turn).order_by(Turn.id)))


def all_questions(uppzy: UppzySimulator) -> list[str]:
    return [r["message"] for r in uppzy.requests_for()]


# ----- in-process: the acceptance scenario -----------------------------------------------------
def test_thirty_mixed_tickets_one_comment_per_customer_turn(
    engine: Runtime, rt_server: RTServer, uppzy: UppzySimulator, customers: list[RTUser]
) -> None:
    """Customer turns by REST and by mail get one comment each; staff replies, staff comments
    and our own comments get none; resolved tickets close their session once; a customer's
    reply reopens a ticket into session ``-2``."""
    desk = Desk(rt_server)
    expected: Counter[str] = Counter()
    by_kind: dict[str, list[str]] = {}
    asked_only: dict[str, str] = {}  # staff answered the question, not what followed
    for i in range(30):
        by_mail = i % 2 == 1
        ticket = desk.open(customers[i % 3], f"Question {i}: my order is late.", by_mail=by_mail)
        kind = ("plain", "staff_reply", "staff_comment", "reply_then_customer", "two_messages",
                "resolved_by_staff")[i % 6]
        by_kind.setdefault(kind, []).append(ticket)
        expected[ticket] = 0 if kind in ("staff_reply", "resolved_by_staff") else 1
        if kind in ("staff_reply", "reply_then_customer"):
            rt_server.staff_reply(ticket, f"{STAFF} Which order?")
        elif kind == "staff_comment":
            rt_server.staff_comment(ticket, f"{INTERNAL}: VIP, be quick.")
        elif kind == "resolved_by_staff":
            rt_server.staff_reply(ticket, f"{STAFF} Refunded.", status="resolved")
        if kind in ("reply_then_customer", "two_messages"):
            # Often in the same RT second as what came before: only RT's order tells them apart.
            desk.write(ticket, f"Also {i}: the invoice is wrong.", by_mail=not by_mail)
        if kind == "reply_then_customer":
            asked_only[ticket] = f"Also {i}: the invoice is wrong."

    assert engine.run_once()
    assert desk.draft_counts() == +expected
    for ticket in by_kind["two_messages"]:  # messages that arrived together are one turn
        [question] = uppzy.questions(f"rt-{ticket}")
        assert "my order is late" in question and "the invoice is wrong" in question
    for ticket, question in asked_only.items():  # only what followed the staff reply is asked
        assert uppzy.questions(f"rt-{ticket}") == [question]

    # Follow-ups, half by mail; one on a ticket staff had answered: one more comment each.
    drafted = [t for t in desk.owner if expected[t]]
    follow_up = drafted[:6] + by_kind["staff_reply"][:1]
    for n, ticket in enumerate(follow_up):
        desk.write(ticket, "And one more thing?", by_mail=n % 2 == 0)
        expected[ticket] += 1
    assert engine.run_once()
    assert desk.draft_counts() == +expected
    assert all(uppzy.questions(f"rt-{t}")[-1] == "And one more thing?" for t in follow_up)
    assert all(len(uppzy.questions(f"rt-{t}")) == 2 for t in drafted[:6])

    # A quiet pass: our comments are new transactions in RT's feed, yet they start nothing.
    asked = len(all_questions(uppzy))
    assert engine.run_once()
    assert desk.draft_counts() == +expected
    assert len(all_questions(uppzy)) == asked

    # Resolved by status change or by a resolving reply: each session is closed exactly once.
    resolved = drafted[:6]
    for n, ticket in enumerate(resolved):
        if n % 2:
            rt_server.set_status(ticket, "resolved")
        else:
            rt_server.staff_reply(ticket, f"{STAFF} Closing this.", status="resolved")
    assert engine.run_once()
    assert engine.run_once()
    closed = uppzy.closed_sessions()
    assert {f"rt-{t}": 1 for t in resolved}.items() <= closed.items()
    assert not any(uppzy.questions(f"rt-{t}") for t in by_kind["resolved_by_staff"])

    # The customer writes again (RT reopens the ticket): the turn continues in "-2". Staff
    # reopening a ticket without a customer message starts nothing.
    for n, ticket in enumerate(resolved[:2]):
        desk.write(ticket, "It broke again.", by_mail=n == 0)
        expected[ticket] += 1
    rt_server.set_status(resolved[2], "open")
    assert engine.run_once()
    assert desk.draft_counts() == +expected
    for ticket in resolved[:2]:
        assert rt_server.ticket(ticket)["Status"] == "open"
        assert uppzy.questions(f"rt-{ticket}-2") == ["It broke again."]
    assert uppzy.questions(f"rt-{resolved[2]}-2") == []
    assert uppzy.closed_sessions()[f"rt-{resolved[0]}"] == 1

    # Every posted turn is one comment on RT, named by its id; nothing failed.
    states = Counter(t.state for t in turns(engine))
    assert set(states) <= {"posted", "cancelled"}
    assert states["posted"] == sum(expected.values())
    posted = {t.posted_id for t in turns(engine) if t.state == "posted"}
    assert posted == {d["id"] for t in desk.owner for d in desk.drafts(t)}
    questions = all_questions(uppzy)
    assert not any(STAFF in q or MARKER in q for q in questions)
    assert uppzy.max_concurrent_per_session <= 1
    desk.assert_customers_see_no_comment()


# ----- the daemon, killed at random moments ----------------------------------------------------
def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--config", str(config), "--log-level", "info"],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL,
    )


def test_sigkill_and_restart_on_rt_loses_no_turn_and_posts_nothing_twice(
    tmp_path: Path, rt_server: RTServer, uppzy: UppzySimulator, customers: list[RTUser]
) -> None:
    """Four SIGKILLs while questions are in flight, customers writing while the daemon is down:
    every restart picks the work up within seconds, and in the end each ticket's latest
    customer message is answered by exactly one comment on RT, with nothing posted twice."""
    uppzy.answer_time = (0.3, 1.5)  # slow enough that a kill often finds questions in flight
    rng = random.Random(11)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(rt_config(tmp_path, uppzy, rt_server)))
    log = tmp_path / "daemon.log"
    db = sqlite3.connect(tmp_path / "connector.db", timeout=10)

    def resumes_with(texts: list[str], what: str) -> None:
        """A restarted daemon turns what customers wrote while it was down into work, quickly."""
        def picked_up() -> bool:
            questions = "\n".join(q for (q,) in db.execute("SELECT question FROM turn"))
            return all(text in questions for text in texts)
        wait_for(picked_up, 10, what)

    desk = Desk(rt_server)
    written_while_down: list[str] = []
    for round_no in range(4):
        proc = start_daemon(config, log)
        try:
            if round_no == 0:
                wait_for(lambda: _cursor(db) is not None, 20, "the daemon's first poll")
                time.sleep(RT_SECOND)
            else:
                resumes_with(written_while_down, f"restart {round_no} to pick up the messages")
            for i in range(10):
                n = round_no * 10 + i
                desk.open(customers[n % 3], f"Question {n}: the app crashes.", by_mail=n % 2 == 1)
            wait_for(lambda: _in_flight(db) > 0, 20, "questions in flight")
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.kill()
            proc.wait(timeout=10)
        # While it is down, customers write again (some by mail), mostly on the tickets it was
        # busy with, and staff add internal notes.
        written_while_down = []
        recent, older = list(desk.owner)[-10:], list(desk.owner)[:-10]
        for ticket in rng.sample(recent, 4) + rng.sample(older, min(2, len(older))):
            text = f"Follow-up {round_no} on {ticket}."
            desk.write(ticket, text, by_mail=rng.random() < 0.5)
            written_while_down.append(text)
        for ticket in rng.sample(list(desk.owner), 2):
            rt_server.staff_comment(ticket, f"{INTERNAL}: looking into it.")

    latest = {ticket: desk.latest_customer_message(ticket) for ticket in desk.owner}

    def latest_turns_posted() -> bool:
        rows = db.execute(
            "SELECT ticket_id, state, last_message_id FROM turn t WHERE id = "
            "(SELECT max(id) FROM turn WHERE ticket_id = t.ticket_id)").fetchall()
        done = {ticket: message for ticket, state, message in rows if state == "posted"}
        return all(done.get(t) == m for t, m in latest.items())

    proc = start_daemon(config, log)
    try:
        resumes_with(written_while_down, "the final restart to pick up the messages")
        wait_for(latest_turns_posted, 60, "every ticket's latest customer turn to be commented")
        time.sleep(2)  # would a late duplicate appear?
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    rows = db.execute("SELECT ticket_id, state, reason, posted_id, request_id, id FROM turn")
    turns_ = rows.fetchall()
    db.close()
    assert {t for t, *_ in turns_} == set(desk.owner)
    posted = [(t, p, request or f"turn-{turn_id}") for t, state, _r, p, request, turn_id in turns_
              if state == "posted"]
    # On RT: each posted turn is exactly one comment, under the id we recorded, with its marker.
    on_rt = {ticket: desk.drafts(ticket) for ticket in desk.owner}
    assert Counter(t for t, *_ in posted) == +Counter({t: len(d) for t, d in on_rt.items()})
    for ticket, posted_id, ref in posted:
        [comment] = [d for d in on_rt[ticket] if f"{MARKER}{ref}" in d["Content"]]
        assert comment["id"] == posted_id
    # Every other turn ended for a recorded reason: a newer message superseded it.
    others = {(state, reason) for _t, state, reason, *_ in turns_ if state != "posted"}
    assert others <= {("cancelled", "superseded by a newer customer message")}
    assert not any(STAFF in q for q in all_questions(uppzy))
    assert uppzy.max_concurrent_per_session <= 1
    desk.assert_customers_see_no_comment()


def _cursor(db: sqlite3.Connection) -> str | None:
    """The stored poll cursor; None before the daemon created its tables or polled."""
    try:
        row = db.execute("SELECT cursor FROM adapter_state WHERE adapter = 'rt'").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def _in_flight(db: sqlite3.Connection) -> int:
    """Turns asked but not yet posted: what a kill should interrupt."""
    return db.execute(
        "SELECT count(*) FROM turn WHERE state IN ('submitted', 'answered', 'posting')"
    ).fetchone()[0]
