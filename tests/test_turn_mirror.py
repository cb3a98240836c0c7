"""``store.turns.mirror`` sets a step's outcome on the row in memory as its loaded state: the
next step reads the values, and no session ever sees them as changes to flush (they were
written by the step's own statement)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlmodel import Session

from connector.store.db import make_engine, migrate
from connector.store.models import Turn, TurnState, utcnow
from connector.store.plain import instance, selecting
from connector.store.turns import mirror

_ROW = selecting(Turn.__table__, "WHERE id = :id")  # type: ignore[attr-defined]


def _stored_turn(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    with Session(engine) as session:
        turn = Turn(adapter="zd", ticket_id="1", session_id="zd-1", site_id="s", question="q",
                    last_message_id="m1", last_message_at=utcnow())
        session.add(turn)
        session.commit()
        return engine, turn.id


def test_a_row_from_a_plain_statement_takes_the_values_as_loaded(tmp_path: Path) -> None:
    engine, turn_id = _stored_turn(tmp_path)
    with engine.connect() as connection:
        found = _ROW.run(connection, {"id": turn_id})
    turn = instance(Turn, found.keys, found.one())
    at = utcnow()
    mirror(turn, {"state": TurnState.SUBMITTED, "request_id": "r-1", "submitted_at": at})
    assert (turn.state, turn.request_id, turn.submitted_at) == (TurnState.SUBMITTED, "r-1", at)
    assert not inspect(turn).committed_state  # nothing pending
    with Session(engine) as session:  # attached later, it has nothing to flush
        session.add(turn)
        assert not session.dirty
    engine.dispose()


def test_a_row_with_a_pending_change_keeps_it_and_flushes_only_that(tmp_path: Path) -> None:
    engine, turn_id = _stored_turn(tmp_path)
    with Session(engine) as session:
        turn = session.get(Turn, turn_id)
        assert turn is not None
        turn.question = "changed through the ORM"
        mirror(turn, {"request_id": "r-2"})
        assert turn.request_id == "r-2"
        session.commit()
    with engine.connect() as connection:
        question, request_id = connection.execute(
            text("SELECT question, request_id FROM turn WHERE id = :id"), {"id": turn_id}).one()
    assert question == "changed through the ORM"
    assert request_id is None  # mirrored, not written: the step's own statement writes it
    engine.dispose()
