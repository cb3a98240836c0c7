"""A new turn handed on by the read that made it starts from what that read saw of the ticket,
without a check of its own; a view older than ``turns.FRESH`` is read again. In-process
engine over real HTTP against the simulators."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from adapters.zendesk.simulator import ZendeskSimulator
from connector.engine import turns
from connector.engine.runtime import Runtime
from connector.store.models import Turn
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]


def _drive(engine: Runtime, until: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.poll("zd")
        engine.dispatch()
        if until():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _posted(engine: Runtime) -> int:
    with Session(engine.db) as db:
        return sum(t.state == "posted" for t in db.exec(select(Turn)))


def test_the_first_step_of_a_handed_on_turn_reads_no_check_of_its_own(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: Counter[str] = Counter()
    surroundings = turns.store.surroundings

    def counting(db: Any, turn: Turn) -> Any:
        checked[turn.state] += 1
        return surroundings(db, turn)

    monkeypatch.setattr(turns.store, "surroundings", counting)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "First question?")
    engine = make_engine()
    # Reads hand turns on once an Uppzy call has succeeded (a rejected key costs one call).
    _drive(engine, lambda: _posted(engine) == 1 and not engine.busy())
    checked.clear()
    for n in range(5):
        zendesk.create_ticket(customer, f"Question {n}?")
    _drive(engine, lambda: _posted(engine) == 6 and not engine.busy())
    assert checked["queued"] == 0  # each asked on its read's view
    assert checked["submitted"] >= 5  # each answer step still checks the ticket
    assert len(zendesk.notes_by(zendesk.bot_user_id)) == 6


def test_a_view_older_than_fresh_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    read = turns.Situation(True, "solved", False, False, False)
    monkeypatch.setattr(turns, "_situation", lambda engine, turn: read)
    handed = turns.Situation(False, "open", False, False, False)
    assert turns._fresh(None, None, handed) is handed  # type: ignore[arg-type]
    stale = turns.Situation(False, "open", False, False, False,
                            at=time.monotonic() - turns.FRESH - 0.1)
    assert turns._fresh(None, None, stale) is read  # type: ignore[arg-type]
    assert turns._fresh(None, None, None) is read  # type: ignore[arg-type]
