"""The whole pipeline against a real django-helpdesk 2.6.1 over HTTP, with the Uppzy simulator.

Customers write the way they really reach django-helpdesk: the public web form to open a
ticket, e-mail to open one or to write again; staff reply, add private notes and change the
status as ``staffer`` over the API (django-helpdesk's ``update_ticket``, as its staff form), or
on the kanban board (a status change without a follow-up). Every count is read back from
django-helpdesk itself and every privacy claim from the customer's own view of the ticket.

One server serves the whole test session, so the engine starts with ``start_from: 0s`` and
polls once before the test writes anything: only this test's tickets are its work.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from djhd_fixture import AGENT, DjhdServer, DjhdUser
from sqlmodel import Session, select
from support import API_KEY

from connector.config import parse_config
from connector.engine.runtime import Runtime
from connector.store.models import Turn
from connector.testing.uppzy_sim import UppzySimulator

MARKER = "AI draft, Uppzy ref "
STAFF = "[staff]"  # in every staff text: a question to Uppzy must never contain it
INTERNAL = f"{STAFF} internal"  # in staff notes: a customer must never see it
RESOLVED, CLOSED, REOPENED = 3, 4, 2
_serial = itertools.count(1)


def unique(what: str) -> str:
    return f"{what} {next(_serial)}-{time.time_ns()}"


def djhd_config(tmp_path: Path, uppzy: UppzySimulator, server: DjhdServer) -> dict[str, Any]:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": "0.5s", "answer_timeout": "20s"},
        "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
        # overlap 2s: this server commits a follow-up within milliseconds of dating it;
        # sweep every poll: the kanban change below is expected in the next cycle.
        "adapters": [{"name": "hd", "type": "django_helpdesk", "url": server.url,
                      "auth": {"token": server.agent_token}, "poll_interval": "0.5s",
                      "start_from": "0s", "overlap": "2s", "sweep_interval": "0s"}],
        "engine": {"tick": "0.1s", "workers": 8},
        "ops": {"listen": "127.0.0.1:0"},
    }


@pytest.fixture
def engine(tmp_path: Path, uppzy: UppzySimulator, djhd_server: DjhdServer) -> Iterator[Runtime]:
    """An engine whose cursor already stands after everything the server held before."""
    built = Runtime(parse_config(djhd_config(tmp_path, uppzy, djhd_server)))
    built.start()
    built.poll("hd")
    yield built
    built.shutdown(grace=2)
    built.db.dispose()


@pytest.fixture
def customers(djhd_server: DjhdServer) -> list[DjhdUser]:
    """Customer accounts with passwords, so their own view of a ticket can be checked."""
    tag = time.time_ns()
    return [djhd_server.create_customer(f"cust{tag}-{i}", f"cust{tag}-{i}@example.org")
            for i in range(2)]


class Desk:
    """Plays the people around the tickets and remembers who owns which ticket."""

    def __init__(self, server: DjhdServer) -> None:
        self.server = server
        self.owner: dict[str, DjhdUser] = {}

    def open(self, customer: DjhdUser, text: str, *, by_mail: bool) -> str:
        if by_mail:
            ticket = self.server.mail_in(text, sender=customer.email, subject=unique("Mail"))
        else:
            ticket = self.server.submit_ticket(unique("Web"), text, email=customer.email)
        self.owner[ticket] = customer
        return ticket

    def write(self, ticket: str, text: str) -> None:
        self.server.customer_reply(ticket, text, sender=self.owner[ticket].email)

    def notes(self, ticket: str) -> list[dict[str, Any]]:
        """Our notes: private follow-ups by the connector's user carrying the marker."""
        return [f for f in self.server.followups(ticket)
                if f["user"] == self.server.agent_id and not f["public"]
                and MARKER in (f["comment"] or "")]

    def note_counts(self) -> Counter[str]:
        return +Counter({ticket: len(self.notes(ticket)) for ticket in self.owner})

    def assert_customers_see_no_note(self) -> None:
        for ticket, customer in self.owner.items():
            seen = self.server.customer_view(ticket, user=customer)
            assert MARKER not in seen and INTERNAL not in seen, ticket


def turns(engine: Runtime) -> list[Turn]:
    with Session(engine.db) as db:
        return list(db.exec(select(Turn).order_by(Turn.id)))


def all_questions(uppzy: UppzySimulator) -> list[str]:
    return [r["message"] for r in uppzy.requests_for()]


def test_mixed_tickets_one_note_per_customer_turn(
    engine: Runtime, djhd_server: DjhdServer, uppzy: UppzySimulator, customers: list[DjhdUser]
) -> None:
    """Customer turns by web form and by mail get one private note each; staff replies, staff
    notes and our own notes get none; resolved tickets close their session once; a customer's
    mail reopens a closed ticket into session ``-2``."""
    server, desk = djhd_server, Desk(djhd_server)
    expected: Counter[str] = Counter()
    by_kind: dict[str, list[str]] = {}
    asked_only: dict[str, str] = {}  # staff answered the question, not what followed
    for i in range(12):
        ticket = desk.open(customers[i % 2], f"Question {i}: my order is late.", by_mail=i % 2 == 1)
        kind = ("plain", "staff_reply", "staff_note", "reply_then_customer", "two_messages",
                "resolved_by_staff")[i % 6]
        by_kind.setdefault(kind, []).append(ticket)
        expected[ticket] = 0 if kind in ("staff_reply", "resolved_by_staff") else 1
        if kind in ("staff_reply", "reply_then_customer"):
            server.staff_reply(ticket, f"{STAFF} Which order?")
        elif kind == "staff_note":
            server.staff_note(ticket, f"{INTERNAL}: VIP, be quick.")
        elif kind == "resolved_by_staff":
            server.staff_reply(ticket, f"{STAFF} Refunded.", status=RESOLVED)
        if kind in ("reply_then_customer", "two_messages"):
            desk.write(ticket, f"Also {i}: the invoice is wrong.")
        if kind == "reply_then_customer":
            asked_only[ticket] = f"Also {i}: the invoice is wrong."

    assert engine.run_once()
    assert desk.note_counts() == +expected
    for ticket in by_kind["two_messages"]:  # messages that arrived together are one turn
        [question] = uppzy.questions(f"hd-{ticket}")
        assert "my order is late" in question and "the invoice is wrong" in question
    for ticket, question in asked_only.items():  # only what followed the staff reply is asked
        assert uppzy.questions(f"hd-{ticket}") == [question]

    # Follow-ups by mail, one on a ticket staff had answered: one more note each.
    drafted = [t for t in desk.owner if expected[t]]
    follow_up = drafted[:4] + by_kind["staff_reply"][:1]
    for ticket in follow_up:
        desk.write(ticket, "And one more thing?")
        expected[ticket] += 1
    assert engine.run_once()
    assert desk.note_counts() == +expected
    assert all(uppzy.questions(f"hd-{t}")[-1] == "And one more thing?" for t in follow_up)

    # A quiet pass: our notes are new follow-ups in the feed, yet they start nothing.
    asked = len(all_questions(uppzy))
    assert engine.run_once()
    assert desk.note_counts() == +expected
    assert len(all_questions(uppzy)) == asked

    # Resolved by the staff form (Resolved), by a closing reply (Closed) and on the kanban
    # board (no follow-up at all): each session is closed exactly once.
    resolved = drafted[:3]
    server.set_status(resolved[0], RESOLVED)
    server.staff_reply(resolved[1], f"{STAFF} Closing this.", status=CLOSED)
    server.patch_status(resolved[2], CLOSED)
    assert engine.run_once()
    assert engine.run_once()
    closed = uppzy.closed_sessions()
    assert {f"hd-{t}": 1 for t in resolved}.items() <= closed.items()
    assert not any(uppzy.questions(f"hd-{t}") for t in by_kind["resolved_by_staff"])

    # The customer mails a closed ticket: django-helpdesk reopens it and the turn continues in
    # "-2". A mail on a Resolved ticket leaves it Resolved (only Closed reopens by mail), so it
    # starts nothing; neither does staff reopening a ticket without a customer message.
    desk.write(resolved[1], "It broke again.")
    expected[resolved[1]] += 1
    desk.write(resolved[0], "Thanks, all good now.")
    server.set_status(resolved[2], REOPENED)
    assert engine.run_once()
    assert desk.note_counts() == +expected
    assert server.ticket(resolved[1])["status"] == REOPENED
    assert server.ticket(resolved[0])["status"] == RESOLVED
    assert uppzy.questions(f"hd-{resolved[1]}-2") == ["It broke again."]
    assert uppzy.questions(f"hd-{resolved[0]}-2") == []
    assert uppzy.questions(f"hd-{resolved[2]}-2") == []
    assert uppzy.closed_sessions()[f"hd-{resolved[1]}"] == 1

    # Every posted turn is one note on django-helpdesk, named by its id; nothing failed.
    states = Counter(t.state for t in turns(engine))
    assert set(states) <= {"posted", "cancelled"}, states
    assert states["posted"] == sum(expected.values())
    posted = {t.posted_id for t in turns(engine) if t.state == "posted"}
    assert posted == {str(n["id"]) for t in desk.owner for n in desk.notes(t)}
    questions = all_questions(uppzy)
    assert not any(STAFF in q or MARKER in q for q in questions)
    assert uppzy.max_concurrent_per_session <= 1
    desk.assert_customers_see_no_note()
    assert AGENT.staff
