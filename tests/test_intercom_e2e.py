"""The whole pipeline against the Intercom simulator over HTTP, with the Uppzy simulator.

Thirty conversations where contacts, teammates (replies and notes) and Fin write, through rate
limiting with Intercom's reset header and bursts of server errors: one note per customer turn,
none for anything else, nothing posted twice; closed conversations close their session once and
a contact writing again continues in session ``-2``. A revoked token pauses the adapter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from support import API_KEY

from adapters.intercom.simulator import IntercomSimulator
from adapters.signatures import post_webhook
from adapters.simulation import Fault
from connector.cli import status
from connector.config import parse_config
from connector.daemon.ops import start_ops
from connector.daemon.webhook_route import register_webhooks
from connector.engine.runtime import Runtime
from connector.store.models import Turn
from connector.testing.uppzy_sim import UppzySimulator

STAFF = "[staff]"  # in every teammate's and Fin's text: no question may contain it
KINDS = ("plain", "teammate_reply", "teammate_note", "fin_then_customer", "two_messages",
         "reply_then_customer")


class Desk:
    """Plays the people of one workspace and counts the connector's notes."""

    def __init__(self, sim: IntercomSimulator) -> None:
        self.sim = sim
        with sim.lock:
            self.agent = sim.workspace.add_admin("Agent Smith", "smith@example.com")
            self.fin = sim.workspace.add_admin("Fin", "fin@example.com", kind="bot")
        self.owner: dict[str, str] = {}

    def open(self, number: int, text: str) -> str:
        with self.sim.lock:
            contact = self.sim.workspace.add_contact(f"Customer {number}",
                                                     f"c{number}@example.org")
            conversation = self.sim.workspace.open_conversation(contact, text)
        self.owner[conversation] = contact
        return conversation

    def write(self, conversation: str, text: str) -> None:
        self.part(conversation, self.owner[conversation], "comment", text)

    def part(self, conversation: str, author: str, part_type: str, text: str | None) -> None:
        with self.sim.lock:
            self.sim.workspace.add_part(conversation, author, part_type, text)

    def set_state(self, conversation: str, state: str) -> None:
        with self.sim.lock:
            self.sim.workspace.set_state(conversation, self.agent, state)

    def note_counts(self) -> Counter[str]:
        return Counter(self.sim.notes_by_bot())


@pytest.fixture
def sim() -> Iterator[IntercomSimulator]:
    simulator = IntercomSimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_engine(tmp_path: Path, uppzy: UppzySimulator,
                sim: IntercomSimulator) -> Iterator[Callable[..., Runtime]]:
    engines: list[Runtime] = []

    def build(**adapter: Any) -> Runtime:
        engine = Runtime(parse_config(config(tmp_path, uppzy, sim, **adapter)))
        engine.start()
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.shutdown(grace=2)
        engine.db.dispose()


def config(tmp_path: Path, uppzy: UppzySimulator, sim: IntercomSimulator,
           **adapter: Any) -> dict[str, Any]:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": "0.3s", "answer_timeout": "30s"},
        "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
        "adapters": [{"name": "hd", "type": "intercom", **sim.adapter_config(),
                      "poll_interval": "0.5s", "start_from": "10m", "page_size": 7,
                      **adapter}],
        "engine": {"tick": "0.1s", "workers": 6},
        "ops": {"listen": "127.0.0.1:0"},
    }


def all_questions(uppzy: UppzySimulator) -> list[str]:
    return [r["message"] for r in uppzy.requests_for()]


def turn_states(engine: Runtime) -> Counter[str]:
    with Session(engine.db) as db:
        return Counter(t.state for t in db.exec(select(Turn)))


def seed(desk: Desk) -> tuple[Counter[str], dict[str, list[str]]]:
    """Thirty conversations, five of each kind; returns the notes each should get."""
    expected: Counter[str] = Counter()
    by_kind: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for i in range(30):
        kind = KINDS[i % len(KINDS)]
        conversation = desk.open(i, f"Question {i}: my order is late.")
        by_kind[kind].append(conversation)
        expected[conversation] = 0 if kind == "teammate_reply" else 1
        if kind in ("teammate_reply", "reply_then_customer"):
            desk.part(conversation, desk.agent, "comment", f"{STAFF} Which order?")
        elif kind == "teammate_note":
            desk.part(conversation, desk.agent, "note", f"{STAFF} VIP, be quick.")
        elif kind == "fin_then_customer":
            desk.part(conversation, desk.fin, "comment", f"{STAFF} Fin: try the tracking page.")
            desk.part(conversation, desk.fin, "assignment", None)
        if kind in ("fin_then_customer", "two_messages", "reply_then_customer"):
            desk.write(conversation, f"Also {i}: the invoice is wrong.")
    return expected, by_kind


def test_thirty_conversations_one_note_per_customer_turn_through_429s_and_5xx_bursts(
    make_engine: Callable[..., Runtime], sim: IntercomSimulator, uppzy: UppzySimulator
) -> None:
    desk = Desk(sim)
    expected, by_kind = seed(desk)
    engine = make_engine()
    sim.add_fault(Fault(endpoint="conversation_search", status=429, retry_after=2, times=1))
    sim.add_fault(Fault(endpoint="conversation_show", status=429, retry_after=1, times=3))
    sim.add_fault(Fault(endpoint="conversation_show", status=503, times=6))
    sim.add_fault(Fault(endpoint="conversation_reply", status=502, times=3))
    sim.lose_answers = 3  # notes written, answers lost: found again by marker, not reposted
    assert engine.run_once() and engine.run_once()
    assert desk.note_counts() == +expected
    assert not sim.faults and sim.lose_answers == 0
    searches = [c for c in sim.calls if c.endpoint == "conversation_search"]
    limited = next(i for i, c in enumerate(searches) if c.status == 429)
    assert searches[limited + 1].at - searches[limited].at >= 1.9  # nothing before the reset
    for conversation in by_kind["reply_then_customer"]:
        assert uppzy.questions(f"hd-{conversation}") == [
            f"Also {list(desk.owner).index(conversation)}: the invoice is wrong."]
    for conversation in by_kind["two_messages"] + by_kind["fin_then_customer"]:
        [question] = uppzy.questions(f"hd-{conversation}")
        assert "my order is late" in question and "the invoice is wrong" in question
    assert not any(STAFF in q for q in all_questions(uppzy))

    drafted = [c for c in desk.owner if expected[c]]
    for conversation in drafted[:5] + by_kind["teammate_reply"][:1]:
        desk.write(conversation, "And one more thing?")
        expected[conversation] += 1
    assert engine.run_once()
    assert desk.note_counts() == +expected

    asked = len(all_questions(uppzy))  # a quiet pass: our own notes start nothing
    assert engine.run_once()
    assert len(all_questions(uppzy)) == asked and desk.note_counts() == +expected

    closed, snoozed = drafted[:3], drafted[3]
    for conversation in closed:
        desk.set_state(conversation, "closed")
    desk.set_state(snoozed, "snoozed")
    assert engine.run_once() and engine.run_once()
    assert {f"hd-{c}": 1 for c in closed}.items() <= uppzy.closed_sessions().items()
    assert f"hd-{snoozed}" not in uppzy.closed_sessions()

    desk.write(closed[0], "It broke again.")  # Intercom reopens on a contact's reply
    desk.set_state(closed[1], "open")  # a teammate reopens; nobody asks anything
    expected[closed[0]] += 1
    assert engine.run_once()
    assert desk.note_counts() == +expected
    assert uppzy.questions(f"hd-{closed[0]}-2") == ["It broke again."]
    assert uppzy.questions(f"hd-{closed[1]}-2") == []
    assert uppzy.closed_sessions()[f"hd-{closed[0]}"] == 1
    states = turn_states(engine)
    assert set(states) <= {"posted", "cancelled"} and states["posted"] == sum(expected.values())


def test_a_revoked_token_pauses_the_adapter_with_a_clear_reason(
    make_engine: Callable[..., Runtime], sim: IntercomSimulator, tmp_path: Path,
    uppzy: UppzySimulator
) -> None:
    desk = Desk(sim)
    desk.open(1, "Hello?")
    engine = make_engine()
    assert engine.poll("hd") == 1
    sim.revoke()
    desk.write(next(iter(desk.owner)), "Anyone?")
    assert engine.poll("hd") == 0
    refused = sum(1 for c in sim.calls if c.status == 401)
    for _ in range(3):
        assert engine.poll("hd") == 0
        time.sleep(0.1)
    assert sum(1 for c in sim.calls if c.status == 401) == refused == 1  # no retry loop
    report = status.collect(parse_config(config(tmp_path, uppzy, sim)), engine.db)
    [adapter] = report["adapters"]
    assert adapter["paused"] and "authentication failed" in adapter["pause_reason"]
    assert sim.token not in str(report)


def test_a_signed_notification_has_the_conversation_read_at_once_and_a_forged_one_is_refused(
    make_engine: Callable[..., Runtime], sim: IntercomSimulator, uppzy: UppzySimulator
) -> None:
    secret = "intercom-client-secret-for-tests"
    desk = Desk(sim)
    engine = make_engine(webhook_secret=secret, poll_interval="60s")
    engine.poll("hd")  # the feed's start: from here on only the webhook says what changed
    polls = sim.call_count("conversation_search")
    ops = start_ops(engine, serve=True)
    try:
        assert register_webhooks(ops, engine) is not None
        assert ops.server is not None
        url = f"{ops.server.url}/webhooks/hd"
        conversation = desk.open(1, "Is my parcel lost?")
        reads = sim.call_count("conversation_show")
        assert sim.send_webhook(url, "a-forged-secret-of-length", conversation) == 401
        body, _headers = sim.signed_notification(secret, conversation)
        assert post_webhook(url, body, {}) == 401  # unsigned
        assert sim.call_count("conversation_show") == reads
        assert sim.send_webhook(url, secret, conversation) == 202
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not desk.note_counts():
            engine.dispatch()
            engine.housekeeping()
            time.sleep(0.1)
        assert desk.note_counts() == {conversation: 1}
        assert sim.call_count("conversation_search") == polls  # the webhook did it, no poll
        assert uppzy.questions(f"hd-{conversation}") == ["Is my parcel lost?"]
    finally:
        ops.stop()
