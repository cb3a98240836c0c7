"""Idle sessions: closed after `close_after_idle` with no customer message, the ticket open."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import ConfigError
from connector.engine.idle import close_idle_sessions
from connector.engine.runtime import Runtime
from connector.store.db import session_scope
from connector.store.models import ChatSession, Turn, utcnow
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]


def sessions(engine: Runtime) -> dict[str, ChatSession]:
    with Session(engine.db) as db:
        return {s.session_id: s for s in db.exec(select(ChatSession))}


def age(engine: Runtime, session_id: str, hours: float) -> None:
    """Pretend the session's last question was asked ``hours`` ago."""
    with session_scope(engine.db) as db:
        chat = db.get(ChatSession, session_id)
        assert chat is not None
        chat.last_customer_at = chat.created_at = utcnow() - timedelta(hours=hours)
        db.add(chat)


def test_idle_session_is_closed_and_the_next_message_starts_the_next_one(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    idle = zendesk.create_ticket(customer, "First question")
    recent = zendesk.create_ticket(customer, "Another question")
    engine = make_engine(adapter={"close_after_idle": "24h"})
    assert engine.run_once()
    age(engine, f"zd-{idle}", hours=25)
    age(engine, f"zd-{recent}", hours=23)

    assert close_idle_sessions(engine) == 1
    assert close_idle_sessions(engine) == 0  # marked once
    engine.housekeeping()  # sends the close
    chats = sessions(engine)
    assert chats[f"zd-{idle}"].state == "closed"
    assert chats[f"zd-{idle}"].reason == "no customer message for 1d"
    assert chats[f"zd-{recent}"].state == "open"
    assert uppzy.closed_sessions() == {f"zd-{idle}": 1}
    assert zendesk.ticket_json(idle)["status"] == "new"  # the ticket itself stays open

    zendesk.add_comment(idle, customer, "Back after a while")
    time.sleep(0.6)  # the adapter polls every 0.5s
    assert engine.run_once()
    assert uppzy.questions(f"zd-{idle}") == ["First question"]
    assert uppzy.questions(f"zd-{idle}-2") == ["Back after a while"]
    assert len(zendesk.comments(idle)) == 4  # question, draft, follow-up, draft


def test_a_session_with_a_question_in_flight_is_not_idle(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_time = 30.0  # the question stays in flight
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    busy = zendesk.create_ticket(customer, "A slow question")
    engine = make_engine(adapter={"close_after_idle": "1h"})
    engine.poll("zd")
    deadline = time.monotonic() + 10
    while not uppzy.call_count("chat_async") and time.monotonic() < deadline:
        engine.dispatch()
        time.sleep(0.05)
    age(engine, f"zd-{busy}", hours=2)
    assert close_idle_sessions(engine) == 0
    with Session(engine.db) as db:
        assert db.exec(select(Turn.state)).all() == ["submitted"]


def test_without_the_setting_sessions_stay_open(make_engine: MakeEngine):
    engine = make_engine()
    with session_scope(engine.db) as db:
        db.add(ChatSession(session_id="zd-old", adapter="zd", site_id="site-1",
                           created_at=utcnow() - timedelta(days=30)))
    assert close_idle_sessions(engine) == 0
    assert sessions(engine)["zd-old"].state == "open"


def test_close_after_idle_must_be_a_positive_duration(make_config: Callable[..., object]):
    assert make_config(adapter={"close_after_idle": "90m"}).adapters[0].close_after_idle == 5400
    with pytest.raises((ConfigError, ValidationError), match=r"adapters\[0\]\.close_after_idle"):
        make_config(adapter={"close_after_idle": "0s"})
