"""A conversation read's write (``store/conversation.apply``): the messages that start or join
a turn are stored with its id, history made new (backfill) is linked to it, and a ticket whose
own session was closed says it reopened. On SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from test_postgres import pg_url  # noqa: F401  (a fixture)

from connector.store.conversation import Changes, NewTurn, apply
from connector.store.db import make_engine, migrate
from connector.store.messages import NewMessage
from connector.store.models import ChatSession, MessageRecord, SessionState, TurnState, utcnow
from connector.store.sessions import Slot
from connector.store.turns import Cancel


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/c.db" if request.param == "sqlite" else \
        request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _message(external_id: str, role: str = "customer") -> NewMessage:
    return NewMessage(external_id, role, True, False, utcnow(), f"body of {external_id}")


def _read(db: Engine, stored: list[NewMessage], question: list[str]):  # type: ignore[no-untyped-def]
    """One read's write of ``stored`` with a turn made of ``question``."""
    now = utcnow()
    turn = NewTurn("a question", question[-1], now, question,
                   Slot("zd", "7", "zd-7", 1, "site", True),
                   (TurnState.SUBMITTED, TurnState.ANSWERED),
                   Cancel({"state": TurnState.CANCELLED}, (TurnState.ANSWERED,)))
    with Session(db) as session:
        applied = apply(session, Changes("zd", "7", now, stored, turn=turn))
        session.commit()
    assert applied.turn is not None
    return applied.turn


def _turn_of(db: Engine) -> dict[str, int | None]:
    with Session(db) as session:
        rows = session.exec(select(MessageRecord.external_id, MessageRecord.turn_id)
                            .order_by(MessageRecord.id)).all()
    return dict(rows)


def test_new_messages_are_stored_with_the_turn_they_start_and_in_order(db: Engine) -> None:
    added = _read(db, [_message("q1"), _message("a1", "agent"), _message("q2")], ["q2"])
    assert added.new and not added.reopened
    assert list(_turn_of(db).items()) == [("q1", None), ("a1", None), ("q2", added.id)]


def test_a_message_joining_a_queued_turn_carries_its_id(db: Engine) -> None:
    first = _read(db, [_message("q1")], ["q1"])
    joined = _read(db, [_message("q2")], ["q2"])
    assert not joined.new and joined.id == first.id
    assert _turn_of(db) == {"q1": first.id, "q2": first.id}


def test_history_made_new_is_linked_to_the_turn(db: Engine) -> None:
    """Backfill: messages stored earlier in no turn become part of the new turn's question,
    beside the ones this read stores."""
    with Session(db) as session:
        apply(session, Changes("zd", "7", utcnow(), [_message("h1"), _message("h2")]))
        session.commit()
    added = _read(db, [_message("q3")], ["h1", "h2", "q3"])
    assert _turn_of(db) == {"h1": added.id, "h2": added.id, "q3": added.id}


def test_a_ticket_whose_session_was_closed_reopens_in_the_next_one(db: Engine) -> None:
    with Session(db) as session:
        session.add(ChatSession(session_id="zd-7", adapter="zd", site_id="site", ticket_id="7",
                                state=SessionState.CLOSED))
        session.commit()
    added = _read(db, [_message("q1")], ["q1"])
    assert added.reopened and added.session_id == "zd-7-2"
