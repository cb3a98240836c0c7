"""The kill-point table (docs/reliability.md), one test per row and side.

For every remote side effect the daemon makes, the process is killed right before the call
(after the record that precedes it) and right after it (before the record that follows), and
a restarted daemon on the same database must end with what the table promises: one draft,
one closed session, one feedback; a repeated call only where the table accepts it, and then
counted. "Killed" is a ``BaseException`` raised from inside the call: it escapes every handler
of the daemon, like the signal would, and the engine is then abandoned without a clean stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from test_pipeline import notes_per_ticket

from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import Config
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator


class Killed(BaseException):
    """The process dies here."""


def kill_at(target: object, method: str, when: str) -> list[bool]:
    """Make ``target.method`` die ``before`` or ``after`` its real call (once)."""
    real = getattr(target, method)
    fired: list[bool] = []

    def dying(*args: Any, **kwargs: Any) -> Any:
        if fired:
            return real(*args, **kwargs)
        fired.append(True)
        if when == "before":
            raise Killed
        real(*args, **kwargs)
        raise Killed

    setattr(target, method, dying)
    return fired


def run(engine: Runtime, until: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            engine.poll("zd")
            engine.dispatch()
            engine.housekeeping()
        except Killed:
            pass
        if until():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def abandon(engine: Runtime) -> None:
    """What SIGKILL leaves: rows as they were, no claim handed back, the file lock gone."""
    engine._stopping = True
    engine._pool.shutdown(wait=True)
    if engine._instance_lock is not None:
        engine._instance_lock.close()
        engine._instance_lock = None


def restarted(config: Config, repeats: list[str]) -> Runtime:
    engine = Runtime(config)
    engine.subscribe(lambda event, f: repeats.append(f["kind"])
                     if event == "side_effect_repeated" else None)
    engine.start()
    return engine


def restart_until_drafted(config: Config, zendesk: ZendeskSimulator, tid: int) -> list[str]:
    """Restart on the same database and run until the ticket has its note; the repeats the
    restarted daemon counted."""
    repeats: list[str] = []
    second = restarted(config, repeats)
    try:
        run(second, lambda: notes_per_ticket(zendesk)[tid] == 1 and not second.busy())
    finally:
        second.shutdown(grace=2)
    return repeats


CHAT = [("async", "submit"), ("sync", "chat")]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(("mode", "method"), CHAT)
def test_killed_around_asking_uppzy(
    make_config, zendesk: ZendeskSimulator, uppzy: UppzySimulator, when: str, mode: str,
    method: str,
):
    """Row "chat": the question is asked again after a restart (Uppzy has no idempotency key),
    counted as a repeat; the ticket still gets one draft."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    config = make_config(uppzy={"mode": mode})
    first = Runtime(config)
    first.start()
    fired = kill_at(first.uppzy, method, when)
    run(first, lambda: bool(fired) and not first._running and not first._waiting)
    abandon(first)
    repeats = restart_until_drafted(config, zendesk, tid)
    assert notes_per_ticket(zendesk)[tid] == 1
    assert len(uppzy.questions(f"zd-{tid}")) == (2 if when == "after" else 1)
    assert repeats == ["chat"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_killed_between_a_read_and_the_ask_of_the_turn_it_created(
    make_config, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
):
    """Row "read": a read creates its new turn claimed by its own instance, which asks it next
    without claiming it again. Killed in between, the restart drops that claim and asks the
    question once: nothing was asked, so nothing is counted as a repeat."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    warm = zendesk.create_ticket(customer, "First question?")  # proves the key: claims skipped
    config = make_config()
    first = Runtime(config)
    first.start()
    run(first, lambda: notes_per_ticket(zendesk)[warm] == 1 and not first.busy())
    tid = zendesk.create_ticket(customer, "Second question?")
    fired = kill_at(first, "hand_on", "before")
    run(first, lambda: bool(fired) and not first._running)
    abandon(first)
    assert uppzy.questions(f"zd-{tid}") == []
    repeats = restart_until_drafted(config, zendesk, tid)
    assert len(uppzy.questions(f"zd-{tid}")) == 1
    assert repeats == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_killed_around_posting(
    make_config, zendesk: ZendeskSimulator, uppzy: UppzySimulator, when: str
):
    """Row "post": the restart looks for the marker first; the note is never posted twice."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    config = make_config()
    first = Runtime(config)
    first.start()
    fired = kill_at(first.adapters["zd"], "post_draft", when)
    run(first, lambda: bool(fired) and not first._running)
    abandon(first)
    assert notes_per_ticket(zendesk)[tid] == (1 if when == "after" else 0)
    repeats = restart_until_drafted(config, zendesk, tid)
    assert notes_per_ticket(zendesk)[tid] == 1
    assert repeats == []


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("kind", ["close", "feedback"])
def test_killed_around_closing_or_feedback(
    make_config, zendesk: ZendeskSimulator, uppzy: UppzySimulator, when: str, kind: str
):
    """Rows "close" and "feedback": sent again after the restart only when the first call may
    have gone out (both are idempotent at Uppzy), and the repeat is counted."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    config = make_config()
    first = Runtime(config)
    first.start()
    run(first, lambda: notes_per_ticket(zendesk)[tid] == 1 and not first.busy())
    fired = kill_at(first.uppzy, "close_session" if kind == "close" else "feedback", when)
    if kind == "close":
        zendesk.set_status(tid, "solved")
    else:
        zendesk.add_tags(tid, "ai_good")
    run(first, lambda: bool(fired))
    abandon(first)
    repeats: list[str] = []
    second = restarted(config, repeats)

    def done() -> bool:
        if kind == "close":
            return uppzy.closed_sessions().get(f"zd-{tid}", 0) >= 1 and not second.busy()
        return len(uppzy.feedback_recorded()) == 1 and not second.busy()

    try:
        run(second, done)
    finally:
        second.shutdown(grace=2)
    calls = uppzy.close_calls(f"zd-{tid}") if kind == "close" else uppzy.call_count("feedback")
    assert calls == (2 if when == "after" else 1)
    assert repeats == [kind]
