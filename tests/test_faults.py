"""Real faults over real HTTP: each costs latency, never a customer's turn (issue: reliability).

Every test injects one fault the way it happens in production (an endpoint down for a while, a
proxy's HTML page instead of JSON, a rate limit, a paste of 200 KB of spaces) into the
simulators, and checks what the customer and the agent end up with: exactly one draft per
customer turn, no fallback note in place of an answer, and health that says what is going on.
Intervals are scaled down (``engine.max_backoff`` of a fraction of a second) so the suite
stays fast; the behaviour does not depend on the scale.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select
from support import claim_reads
from test_pipeline import notes_per_ticket, turns

from adapters.simulation import Fault
from adapters.text import body_text, clean_body
from adapters.zendesk.simulator import ZendeskSimulator
from connector.cli.status import collect
from connector.daemon.ops import start_ops
from connector.engine import conversation
from connector.engine.estimator import AnswerTimeEstimator
from connector.engine.runtime import Runtime
from connector.store import claims
from connector.store.db import session_scope
from connector.store.models import ChatSession, utcnow
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]
FAST = {"max_backoff": "0.3s", "max_attempts": 3, "lease_ttl": "3s", "tick": "0.05s"}


def drive(engine: Runtime, until: Callable[[], bool], timeout: float = 30.0) -> None:
    """The daemon's jobs by hand, heartbeat included, until ``until()`` holds; a database
    error in one round (a cut connection) is what the scheduler would log and survive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for name in engine.adapters:
                engine.poll(name)
            engine.heartbeat()
            engine.dispatch()
            engine.housekeeping()
            if until():
                return
        except DBAPIError:
            pass
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def settled(engine: Runtime) -> Callable[[], bool]:
    return lambda: not engine.busy()


def seed(zendesk: ZendeskSimulator, n: int, text: str = "Question") -> tuple[int, list[int]]:
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    return customer, [zendesk.create_ticket(customer, f"{text} {i}?") for i in range(n)]


def fallbacks(zendesk: ZendeskSimulator) -> list[dict]:
    return [n for n in zendesk.notes_by(zendesk.bot_user_id)
            if n["body"].startswith("The AI assistant has no confident answer")]


# ----- reads ---------------------------------------------------------------------------------
def test_a_malformed_comments_read_is_read_again_not_given_up(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    _, tickets = seed(zendesk, 2)
    zendesk.add_fault(Fault(endpoint="ticket_comments", status=200, body="<html>proxy</html>",
                            times=4))
    engine = make_engine(engine=FAST)
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    drive(engine, settled(engine))
    assert not fallbacks(zendesk)


def test_comments_down_for_longer_than_every_attempt_loses_nothing(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    """The change feed works while comment reads answer 503 for well past ``max_attempts``
    backoffs: the reads wait, and ``status`` shows them failing meanwhile."""
    _, tickets = seed(zendesk, 2)
    engine = make_engine(engine=FAST)
    zendesk.add_fault(Fault(endpoint="ticket_comments", status=503, times=None,
                            until=time.monotonic() + 4.0))
    drive(engine, lambda: collect(engine.config, engine.db)["adapters"][0]
          ["reads_failing"]["tickets"] == 2)
    report = collect(engine.config, engine.db)["adapters"][0]
    assert "503" in report["reads_failing"]["last_error"]
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    assert collect(engine.config, engine.db)["adapters"][0]["reads_failing"]["tickets"] == 0


def test_a_rate_limited_helpdesk_gets_every_ticket_drafted(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    """Most calls answer 429 with Retry-After for a while: the client's own gate then refuses
    calls without sending them, which must not count as attempts that end the reads."""
    _, tickets = seed(zendesk, 120)
    zendesk.add_fault(Fault(endpoint="ticket_comments", status=429, retry_after=6,
                            times=None, probability=0.5, until=time.monotonic() + 8.0))
    engine = make_engine(engine={**FAST, "max_attempts": 2})
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)),
          timeout=90)
    with engine.db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ticket WHERE needs_sync")).scalar() == 0


# ----- odd input -----------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_text_cleaning_is_linear_on_a_200_kb_run_of_spaces():
    """Was minutes of regex backtracking holding the GIL: the whole daemon froze."""
    for spaces in (" " * 200_000, "\t " * 100_000):
        body = f"Hello{spaces}there\nsecond line{spaces}\n> quoted{spaces}"
        assert body_text(body).startswith("Hello there")
        assert clean_body(body).startswith("Hello there")
        assert clean_body(html=f"<p>Hello{spaces}there</p>") == "Hello there"


@pytest.mark.timeout(60)
def test_a_message_with_200_kb_of_spaces_is_drafted_while_health_answers(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "My invoice" + " " * 200_000 + "is wrong")
    engine = make_engine(engine=FAST, ops={"listen": "127.0.0.1:0"})
    ops = start_ops(engine)
    try:
        assert ops.server is not None
        drive(engine, lambda: notes_per_ticket(zendesk)[tid] == 1)
        assert requests.get(ops.server.url + "/healthz", timeout=5).status_code == 200
    finally:
        ops.stop()
    assert uppzy.questions(f"zd-{tid}")[0].startswith("My invoice")


def test_a_customer_pasting_our_marker_still_gets_an_answer(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    pasted = zendesk.create_ticket(customer, "Your note said 'AI draft, Uppzy ref abc-1'. Why?")
    quoted = zendesk.create_ticket(customer, "First question?")
    engine = make_engine(engine=FAST)
    drive(engine, lambda: notes_per_ticket(zendesk)[quoted] == 1 and
          notes_per_ticket(zendesk)[pasted] == 1)
    note = zendesk.notes_by(zendesk.bot_user_id)[-1]["body"]
    zendesk.add_comment(quoted, customer, f"Thanks. You wrote:\n> {note}\nBut what about X?")
    drive(engine, lambda: notes_per_ticket(zendesk)[quoted] == 2)
    assert uppzy.questions(f"zd-{quoted}")[-1].startswith("Thanks. You wrote")


def test_the_marker_search_matches_whole_refs_only(zendesk: ZendeskSimulator, make_engine):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    zendesk.add_comment(tid, zendesk.bot_user_id, "Draft\n\n— AI draft, Uppzy ref turn-120",
                        public=False)
    adapter = make_engine().adapters["zd"]
    ticket = adapter.get_ticket(str(tid))
    assert adapter.find_posted(ticket, "AI draft, Uppzy ref turn-12") is None
    assert adapter.find_posted(ticket, "AI draft, Uppzy ref turn-120") is not None


# ----- Uppzy ---------------------------------------------------------------------------------
def test_uppzy_down_for_longer_than_every_attempt_costs_no_answer(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """Every Uppzy endpoint answers 503 for a while (scaled from five minutes) with 20 questions
    waiting and 5 tickets resolved: questions, status polls, closes and feedback all wait;
    afterwards every question is
    answered (no fallback note), every session closed, and readiness said not ready meanwhile."""
    customer, tickets = seed(zendesk, 25)
    engine = make_engine(engine=FAST, ops={"listen": "127.0.0.1:0"})
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    for tid in tickets[:5]:
        zendesk.set_status(tid, "solved")
    for tid in tickets[5:]:
        zendesk.add_comment(tid, customer, "And another thing?")
    zendesk.add_tags(tickets[5], "ai_good")
    ops = start_ops(engine)
    assert ops.server is not None
    readyz = ops.server.url + "/readyz"
    seen: list[tuple[int, bool, str]] = []  # (status, uppzy ready, database) per probe
    watching = threading.Event()

    def probe() -> None:
        while not watching.is_set():
            body = requests.get(readyz, timeout=5)
            seen.append((body.status_code, body.json()["uppzy"]["ready"],
                         body.json()["database"]))
            time.sleep(0.05)

    watcher = threading.Thread(target=probe, daemon=True)
    uppzy.add_fault(Fault(endpoint="", status=503, times=None, until=time.monotonic() + 6.0))
    watcher.start()
    try:
        drive(engine, lambda: notes_per_ticket(zendesk) == Counter(
            {t: 1 if t in tickets[:5] else 2 for t in tickets}) and not engine.busy(),
            timeout=40)
        drive(engine, lambda: seen[-1][:2] == (200, True))
    finally:
        watching.set()
        watcher.join(timeout=10)
        ops.stop()
    assert (503, False, "ok") in seen  # not ready while Uppzy was down, for that reason
    assert not fallbacks(zendesk)
    assert {f"zd-{t}": 1 for t in tickets[:5]}.items() <= uppzy.closed_sessions().items()
    assert list(uppzy.feedback_recorded().values()) == ["good"]
    with Session(engine.db) as db:
        assert {s.state for s in db.exec(select(ChatSession)) if s.ticket_id in
                {str(t) for t in tickets[:5]}} == {"closed"}


def test_one_malformed_status_answer_does_not_throw_the_answer_away(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_time = 0.5
    _, tickets = seed(zendesk, 1)
    uppzy.add_fault(Fault(endpoint="chat_status", status=200, body="<html>gateway</html>",
                          times=1))
    engine = make_engine(engine=FAST)
    drive(engine, lambda: notes_per_ticket(zendesk)[tickets[0]] == 1)
    assert not fallbacks(zendesk)


def test_a_post_that_timed_out_after_landing_is_found_not_replaced_by_a_fallback(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """The helpdesk writes the note after our read timeout; then comment reads fail for
    longer than every attempt. The ticket must end with that one note, never a fallback."""
    _, tickets = seed(zendesk, 1)
    tid = tickets[0]
    zendesk.add_fault(Fault(kind="delay", endpoint="ticket_update", delay=1.5, times=1))
    engine = make_engine(engine=FAST, adapter={"timeout": "1s"})
    drive(engine, lambda: any(t.state == "posting" and t.attempts for t in turns(engine)))
    zendesk.add_fault(Fault(endpoint="ticket_comments", status=503, times=None,
                            until=time.monotonic() + 10.0))
    drive(engine, lambda: [t.state for t in turns(engine)] == ["posted"])
    assert notes_per_ticket(zendesk)[tid] == 1
    assert not fallbacks(zendesk)


def test_downtime_does_not_teach_the_estimator_to_poll_late(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_time = 0.2
    _, tickets = seed(zendesk, 3)
    engine = make_engine(engine=FAST)
    drive(engine, lambda: all(t.state == "submitted" for t in turns(engine)) and
          len(turns(engine)) == 3)
    uppzy.add_fault(Fault(endpoint="chat_status", status=503, times=None,
                          until=time.monotonic() + 3.0))
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    assert engine.estimator.expected("site-1") is None  # the outage was not learnt


def test_the_first_status_poll_comes_before_the_answer_timeout_whatever_the_history():
    estimator = AnswerTimeEstimator(default_first_poll=2.0)
    for _ in range(50):
        estimator.observe("s", 300.0)
    assert estimator.first_poll_delay("s", ceiling=30.0) == 30.0
    assert estimator.first_poll_delay("new-site", ceiling=1.0) == 1.0


# ----- claims --------------------------------------------------------------------------------
def test_a_claim_left_by_a_step_that_died_is_not_renewed(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """A step that died (here: its release failed too, as with the database unreachable)
    leaves its claim behind; the heartbeat must not keep it alive forever."""
    _, tickets = seed(zendesk, 1)
    engine = make_engine(engine=FAST)
    engine.poll("zd")
    reads = claim_reads(engine, 10)
    for record in reads:
        conversation.sync_ticket(engine, record)
    with session_scope(engine.db) as db:  # the claim a dispatch makes; its step never runs
        dead = claims.claim_turns(db, engine.instance_id, utcnow(), engine.lease_ttl, 5)
    assert [t.id for t in dead] == [turns(engine)[0].id]
    drive(engine, lambda: notes_per_ticket(zendesk)[tickets[0]] == 1, timeout=20)


def test_status_tells_fallbacks_apart_from_answers(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    _, tickets = seed(zendesk, 2)
    uppzy.add_fault(Fault(endpoint="chat_async", status=400, body={"error": "too long"},
                          times=1))
    engine = make_engine(engine=FAST)
    drive(engine, lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    drive(engine, settled(engine))  # a post is recorded a moment after the helpdesk has it
    report = collect(engine.config, engine.db)["adapters"][0]
    assert report["turns"]["posted"] == 1 and report["fallbacks"] == 1
    assert len(fallbacks(zendesk)) == 1
    assert sorted(t.outcome or "" for t in turns(engine)) == ["draft", "fallback"]
