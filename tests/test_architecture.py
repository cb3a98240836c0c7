"""The documented state machine is the one the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.core.errors import InvalidTransition
from connector.store.models import (
    TURN_TRANSITIONS,
    TurnState,
    check_transition,
)

DOC = Path(__file__).parent.parent / "docs" / "architecture.md"


def documented_edges() -> set[tuple[str, str]]:
    block = re.search(r"```transitions\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None, "docs/architecture.md lost its transitions block"
    return {(a, b) for a, b in re.findall(r"^(\w+) -> (\w+)", block.group(1), re.MULTILINE)}


def test_the_documented_transitions_are_the_enforced_ones():
    enforced = {(a.value, b.value) for a, targets in TURN_TRANSITIONS.items() for b in targets}
    assert documented_edges() == enforced
    assert set(TURN_TRANSITIONS) == set(TurnState)


def test_a_write_along_a_missing_edge_is_refused():
    check_transition(TurnState.POSTING, TurnState.POSTED)
    check_transition(TurnState.POSTED, TurnState.POSTED)  # rewriting the same state is fine
    with pytest.raises(InvalidTransition):
        check_transition(TurnState.POSTED, TurnState.QUEUED)
    with pytest.raises(InvalidTransition):
        check_transition(TurnState.CANCELLED, TurnState.POSTING)
