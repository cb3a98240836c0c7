"""A conversation read's store work: its write (``store/conversation.apply``) stores the
messages that start or join a turn with its id, links history made new (backfill) to it, and
says when a ticket whose own session was closed reopened; its snapshot reads our posts, a post
under way and the drafts waiting for a verdict in one statement (``store/turns.ours``). On
SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select
from test_plain import db  # noqa: F401  (a fixture: SQLite, then PostgreSQL)
from test_postgres import pg_url  # noqa: F401  (a fixture, for db)

from connector.store.conversation import Changes, NewTurn, apply
from connector.store.messages import NewMessage
from connector.store.models import (
    ChatSession,
    MessageRecord,
    SessionState,
    Turn,
    TurnState,
    utcnow,
)
from connector.store.sessions import Slot
from connector.store.turns import Cancel, ours


def _message(external_id: str, role: str = "customer") -> NewMessage:
    return NewMessage(external_id, role, True, False, utcnow(), f"body of {external_id}")


def _read(engine: Engine, stored: list[NewMessage], question: list[str]):  # type: ignore[no-untyped-def]
    """One read's write of ``stored`` with a turn made of ``question``."""
    now = utcnow()
    turn = NewTurn("a question", question[-1], now, question,
                   Slot("zd", "7", "zd-7", 1, "site", True),
                   (TurnState.SUBMITTED, TurnState.ANSWERED),
                   Cancel({"state": TurnState.CANCELLED}, (TurnState.ANSWERED,)))
    with Session(engine) as session:
        applied = apply(session, Changes("zd", "7", now, stored, turn=turn))
        session.commit()
    assert applied.turn is not None
    return applied.turn


def _turn_of(engine: Engine) -> dict[str, int | None]:
    with Session(engine) as session:
        rows = session.exec(select(MessageRecord.external_id, MessageRecord.turn_id)
                            .order_by(MessageRecord.id)).all()
    return dict(rows)


def test_new_messages_are_stored_with_the_turn_they_start_and_in_order(db: Engine) -> None:  # noqa: F811
    added = _read(db, [_message("q1"), _message("a1", "agent"), _message("q2")], ["q2"])
    assert added.new and not added.reopened
    assert list(_turn_of(db).items()) == [("q1", None), ("a1", None), ("q2", added.id)]


def test_a_message_joining_a_queued_turn_carries_its_id(db: Engine) -> None:  # noqa: F811
    first = _read(db, [_message("q1")], ["q1"])
    joined = _read(db, [_message("q2")], ["q2"])
    assert not joined.new and joined.id == first.id
    assert _turn_of(db) == {"q1": first.id, "q2": first.id}


def test_history_made_new_is_linked_to_the_turn(db: Engine) -> None:  # noqa: F811
    """Backfill: messages stored earlier in no turn become part of the new turn's question,
    beside the ones this read stores."""
    with Session(db) as session:
        apply(session, Changes("zd", "7", utcnow(), [_message("h1"), _message("h2")]))
        session.commit()
    added = _read(db, [_message("q3")], ["h1", "h2", "q3"])
    assert _turn_of(db) == {"h1": added.id, "h2": added.id, "q3": added.id}


def test_a_ticket_whose_session_was_closed_reopens_in_the_next_one(db: Engine) -> None:  # noqa: F811
    with Session(db) as session:
        session.add(ChatSession(session_id="zd-7", adapter="zd", site_id="site", ticket_id="7",
                                state=SessionState.CLOSED))
        session.commit()
    added = _read(db, [_message("q1")], ["q1"])
    assert added.reopened and added.session_id == "zd-7-2"


def test_the_read_sees_our_posts_a_post_under_way_and_the_drafts_awaiting_a_verdict(
        db: Engine) -> None:  # noqa: F811
    now = utcnow()

    def turn(n: int, state: TurnState, **values: object) -> Turn:
        return Turn(adapter="zd", ticket_id="7", session_id="zd-7", site_id="s",
                    question=f"q{n}", last_message_id=f"m{n}", last_message_at=now,
                    state=state, **values)

    with Session(db) as session:
        session.add_all([
            turn(1, TurnState.POSTED, posted_id="p1", outcome="draft", answer="a1"),
            turn(2, TurnState.POSTED, posted_id="p2", outcome="draft", answer="a2",
                 adoption="sent"),
            turn(3, TurnState.POSTED, posted_id="p3", outcome="fallback"),
            turn(4, TurnState.POSTED, outcome="draft", answer="a4"),  # id not recorded
            turn(5, TurnState.QUEUED),
            Turn(adapter="zd", ticket_id="8", session_id="zd-8", site_id="s", question="x",
                 last_message_id="x", last_message_at=now, state=TurnState.POSTING),
        ])
        session.commit()
        seen = ours(session, "zd", "7")
        assert seen.posted_ids == {"p1", "p2", "p3"} and not seen.posting
        assert [t.question for t in seen.drafts] == ["q1", "q4"]
        session.add(turn(6, TurnState.POSTING, answer="a6", outcome="draft"))
        session.commit()
        assert ours(session, "zd", "7").posting
