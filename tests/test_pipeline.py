"""The turn pipeline end to end, in-process, over real HTTP against the simulators."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import ConfigError
from connector.engine import runtime as runtime_module
from connector.engine import sync_slots
from connector.engine.runtime import Runtime
from connector.engine.sessions import requester_key
from connector.store import secrets
from connector.store.models import AdapterState, ChatSession, Feedback, Turn
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]


def notes_per_ticket(zendesk: ZendeskSimulator) -> Counter[int]:
    return Counter(n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id))


def turns(engine: Runtime) -> list[Turn]:
    with Session(engine.db) as db:
        return list(db.exec(select(Turn).order_by(Turn.id)))


def drive(engine: Runtime, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Run the daemon's jobs by hand until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in engine.adapters:
            engine.poll(name)
        engine.dispatch()
        engine.housekeeping()
        if until():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_fifty_mixed_tickets_one_draft_per_customer_turn(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    expected: dict[int, int] = {}
    customers: dict[int, int] = {}
    for i in range(50):
        customer = zendesk.add_user(f"C{i}", "end-user", f"c{i}@example.org")
        tid = zendesk.create_ticket(customer, f"Question number {i}?")
        customers[tid] = customer
        expected[tid] = 1
        if i % 5 == 0:  # a human already answered: nothing to draft
            zendesk.add_comment(tid, agent, "Answered by a human.", public=True)
            expected[tid] = 0
        elif i % 7 == 0:  # an internal note after the question does not answer it
            zendesk.add_comment(tid, agent, "Internal: VIP customer.", public=False)
        elif i % 9 == 0:  # nor does a trigger's public message
            zendesk.add_comment(tid, agent, "We got your request.", via_channel="rule")
    engine = make_engine()
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == +Counter(expected)

    # Follow-ups on ten tickets: one more draft each, in the same session.
    follow_up = [t for t, n in expected.items() if n][:10]
    for tid in follow_up:
        zendesk.add_comment(tid, customers[tid], "And one more thing?")
        expected[tid] += 1
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == +Counter(expected)
    assert all(len(uppzy.questions(f"zd-{t}")) == 2 for t in follow_up)

    # A quiet pass: our own notes bumped the tickets, but they never start a turn.
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == +Counter(expected)

    # Resolve five: their sessions are closed exactly once, even across passes.
    resolved = follow_up[:5]
    for tid in resolved:
        zendesk.set_status(tid, "solved")
    assert engine.run_once()
    assert engine.run_once()
    closed = uppzy.closed_sessions()
    assert {f"zd-{t}": 1 for t in resolved}.items() <= closed.items()

    # The customer writes again on a solved ticket: it reopens and continues in "-2".
    reopened = resolved[0]
    zendesk.add_comment(reopened, customers[reopened], "It broke again.")
    expected[reopened] += 1
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == +Counter(expected)
    assert uppzy.questions(f"zd-{reopened}-2") == ["It broke again."]
    assert uppzy.max_concurrent_per_session <= 1


def test_newer_message_supersedes_the_turn_in_flight(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_time = 1.0
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "First question")
    engine = make_engine()
    drive(engine, lambda: any(t.state == "submitted" for t in turns(engine)))
    zendesk.add_comment(tid, customer, "Actually, a different question")
    drive(engine, lambda: notes_per_ticket(zendesk)[tid] == 1 and not engine.busy())
    time.sleep(0.5)
    drive(engine, lambda: not engine.busy())
    notes = zendesk.notes_by(zendesk.bot_user_id)
    assert len(notes) == 1
    assert "a different question" in notes[0]["body"]
    states = [(t.state, t.reason) for t in turns(engine)]
    assert states[0] == ("cancelled", "superseded by a newer customer message")
    assert states[1][0] == "posted"
    assert uppzy.max_concurrent_per_session == 1
    assert uppzy.questions(f"zd-{tid}") == ["First question", "Actually, a different question"]


def test_message_arriving_while_its_turn_is_being_asked_is_asked_too(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """The follow-up lands while the submit of the first question is on the wire: it must not
    be merged into a question that was already sent (it would never reach Uppzy)."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "First question")
    uppzy.add_fault(Fault(kind="delay", endpoint="chat_async", delay=1.5))
    engine = make_engine()
    engine.poll("zd")
    drive(engine, lambda: any(t.claim_owner for t in turns(engine)))
    zendesk.add_comment(tid, customer, "And a second one")
    engine.poll("zd")
    drive(engine, lambda: len(turns(engine)) == 2)
    drive(engine, lambda: notes_per_ticket(zendesk)[tid] == 1 and not engine.busy())
    notes = zendesk.notes_by(zendesk.bot_user_id)
    assert len(notes) == 1
    asked = uppzy.questions(f"zd-{tid}")
    assert asked[0] == "First question"
    assert asked[-1] == "First question\n\nAnd a second one"
    states = [(t.state, t.reason) for t in turns(engine)]
    assert states[0] == ("cancelled", "superseded by a newer customer message")
    assert states[1][0] == "posted"
    assert uppzy.max_concurrent_per_session == 1


def test_a_read_slower_than_the_lease_is_renewed_not_read_twice(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """A conversation read holds its ticket by a lease the heartbeat renews: a helpdesk that
    takes longer than lease_ttl to answer must not get the same ticket read a second time."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Slow helpdesk")
    zendesk.add_fault(Fault(kind="delay", endpoint="ticket_comments", delay=4.5))
    engine = make_engine(engine={"lease_ttl": "3s"}, adapter={"timeout": "10s"})
    assert engine.run_once()
    assert notes_per_ticket(zendesk)[tid] == 1
    assert zendesk.call_count("ticket_comments") == 1


def test_agent_reply_while_answer_is_pending_cancels_the_draft(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_time = 1.0
    agent = zendesk.add_user("A", "agent", "a@example.com")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Where is my parcel?")
    engine = make_engine()
    drive(engine, lambda: any(t.state == "submitted" for t in turns(engine)))
    zendesk.add_comment(tid, agent, "It ships today.")
    drive(engine, lambda: not engine.busy())
    assert notes_per_ticket(zendesk)[tid] == 0
    assert [(t.state, t.reason) for t in turns(engine)] == [("cancelled", "answered by an agent")]


def test_agent_reply_during_a_sync_chat_cancels_the_draft(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """An answer goes straight on to be posted in the step that received it; after a chat
    that waited, the ticket is checked again first, so an agent's reply meanwhile wins."""
    uppzy.sync_latency = 2.0
    agent = zendesk.add_user("A", "agent", "a@example.com")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Where is my parcel?")
    engine = make_engine(uppzy={"mode": "sync"})
    drive(engine, lambda: len(uppzy.requests_for()) == 1)
    zendesk.add_comment(tid, agent, "It ships today.")
    drive(engine, lambda: not engine.busy())
    assert notes_per_ticket(zendesk)[tid] == 0
    assert [(t.state, t.reason) for t in turns(engine)] == [("cancelled", "answered by an agent")]


def test_low_confidence_posts_the_fallback_and_empty_fallback_posts_nothing(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.confidence = ("low", 0.2)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "Can you waive the fee?")
    engine = make_engine(draft={"min_confidence": 0.5, "fallback": "Please answer this one."})
    assert engine.run_once()
    notes = zendesk.notes_by(zendesk.bot_user_id)
    assert len(notes) == 1
    assert notes[0]["body"].startswith("Please answer this one.")
    assert "Simulated answer" not in notes[0]["body"]
    assert "AI draft, Uppzy ref req_" in notes[0]["body"]

    other = zendesk.create_ticket(customer, "And the other fee?")
    quiet = make_engine(draft={"min_confidence": "medium", "fallback": ""},
                        database={"url": f"sqlite:///{engine.db.url.database}x"})
    assert quiet.run_once()
    assert notes_per_ticket(zendesk)[other] == 0
    assert [t.state for t in turns(quiet)] == ["cancelled", "cancelled"]


def test_draft_template_keeps_the_answer_unchanged(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    answer = "Line one.\n\n* bullet {with braces}\n<b>not html</b> 100%"
    uppzy.answer_fn = lambda _session, _message: answer
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "Format test")
    engine = make_engine(
        draft={"template": "Suggested ({confidence_level}):\n{answer}\n-- {marker}"})
    assert engine.run_once()
    body = zendesk.notes_by(zendesk.bot_user_id)[0]["body"]
    assert body.startswith(f"Suggested (high):\n{answer}\n-- AI draft, Uppzy ref req_")


def test_sync_mode_and_its_fallback_on_timeout(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Sync please")
    engine = make_engine(uppzy={"mode": "sync"})
    assert engine.run_once()
    assert "Simulated answer to: Sync please" in zendesk.notes_by(zendesk.bot_user_id)[0]["body"]
    assert uppzy.call_count("chat_async") == 0

    uppzy.sync_latency = 3.0
    zendesk.add_comment(tid, customer, "Slow one")
    engine.shutdown()  # one instance per SQLite file
    engine2 = make_engine(uppzy={"mode": "sync", "answer_timeout": "1s"},
                          database={"url": f"sqlite:///{engine.db.url.database}"})
    engine2.run_once()
    notes = zendesk.notes_by(zendesk.bot_user_id)
    assert len(notes) == 2
    assert notes[1]["body"].startswith("The AI assistant has no confident answer")
    # The timed-out question was not asked twice.
    assert uppzy.questions(f"zd-{tid}") == ["Sync please", "Slow one"]
    failed = turns(engine2)[-1]
    assert failed.outcome == "fallback" and "read timeout" in (failed.reason or "")


def test_sync_chats_wait_in_slots_of_their_own_not_in_workers(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """A sync chat holds its call for the whole answer time: with two workers, twelve questions
    answered in one second each must still be asked together, and nothing is polled."""
    uppzy.sync_latency = 1.0
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = [zendesk.create_ticket(customer, f"Sync question {n}") for n in range(12)]
    engine = make_engine(uppzy={"mode": "sync", "sync_concurrency": 12},
                         engine={"workers": 2})
    assert engine.run_once()
    assert all(notes_per_ticket(zendesk)[t] == 1 for t in tickets)
    assert uppzy.call_count("chat") == 12
    assert uppzy.call_count("chat_async") == 0 and uppzy.call_count("chat_status") == 0
    spans = [(r["created_at"], r["completed_at"]) for r in uppzy.requests_for()]
    most_at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most_at_once > 2 * 2  # well beyond what two workers could hold


def test_post_whose_response_was_lost_is_found_not_repeated(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Lost response")
    # The helpdesk takes the note, but answers after our read timeout.
    zendesk.add_fault(Fault(kind="delay", endpoint="ticket_update", delay=1.5, times=1))
    engine = make_engine(adapter={"timeout": "1s"})
    drive(engine, lambda: turns(engine) and turns(engine)[0].state == "posted", timeout=30)
    assert notes_per_ticket(zendesk)[tid] == 1
    assert zendesk.call_count("ticket_update") == 1
    assert turns(engine)[0].posted_id == str(zendesk.notes_by(zendesk.bot_user_id)[0]["id"])


def test_session_refused_by_uppzy_continues_in_the_next_id(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Hello")
    engine = make_engine()
    engine.uppzy.close_session("site-1", f"zd-{tid}")  # closed behind our back
    assert engine.run_once()
    assert notes_per_ticket(zendesk)[tid] == 1
    assert uppzy.questions(f"zd-{tid}-2") == ["Hello"]
    with Session(engine.db) as db:
        assert db.get(ChatSession, f"zd-{tid}").state == "closed"


def test_feedback_tag_sends_feedback_once(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Rate me")
    engine = make_engine()
    assert engine.run_once()
    request_id = turns(engine)[0].request_id
    zendesk.add_tags(tid, "ai_bad")
    assert engine.run_once()
    zendesk.add_tags(tid, "vip")
    assert engine.run_once()
    assert uppzy.feedback_recorded() == {request_id: "bad"}
    assert uppzy.call_count("feedback") == 1
    with Session(engine.db) as db:
        assert [f.state for f in db.exec(select(Feedback))] == ["sent"]


def test_per_user_sessions_never_carry_the_email(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "private.person@example.org")
    zendesk.create_ticket(customer, "One")
    zendesk.create_ticket(customer, "Two")
    engine = make_engine(session="per_user")
    assert engine.run_once()
    session_ids = {sid for _site, sid in uppzy.sessions}
    assert len(session_ids) == 1
    (only,) = session_ids
    assert only.startswith("zd-u-") and "private" not in only and "@" not in only
    assert sorted(uppzy.questions(only)) == ["One", "Two"]
    # Keyed with this installation's own secret: a list of addresses hashed plainly does not
    # lead back to the session.
    plain = hashlib.sha256(b"private.person@example.org").hexdigest()[:16]
    assert plain not in only
    assert only == "zd-u-" + requester_key(secrets.installation_key(engine.db),
                                           "private.person@example.org", None)


def test_helpdesk_auth_failure_pauses_that_adapter_only(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    tmp_path, make_config,
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Hello")
    config = make_config()
    good = config.adapters[0]
    bad = good.model_copy(update={"name": "zd-bad"})
    bad.auth = bad.auth.model_copy(update={"api_token": _secret("wrong-token")})
    config.adapters.append(bad)
    engine = Runtime(config)
    engine.start()
    try:
        assert engine.run_once()
        assert notes_per_ticket(zendesk)[tid] == 1
        with Session(engine.db) as db:
            state = db.get(AdapterState, "zd-bad")
            assert state.paused_until is not None
            assert "authentication failed" in state.pause_reason
            assert db.get(AdapterState, "zd").paused_until is None
    finally:
        engine.shutdown()


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


def test_unknown_adapter_in_config_is_a_config_error(make_config):
    try:
        make_config(adapter={"type": "nope"})
    except ConfigError as exc:
        assert "adapters[0].type" in str(exc)
    else:
        raise AssertionError("expected a ConfigError")


def test_shadow_mode_keeps_answers_and_compares_them_with_agents(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    uppzy.answer_fn = lambda _s, message: f"To reset your password open settings. ({message})"
    agent = zendesk.add_user("A", "agent", "a@example.com")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    close = zendesk.create_ticket(customer, "How do I reset my password?")
    far = zendesk.create_ticket(customer, "Do you ship to Norway?")
    early = zendesk.create_ticket(customer, "Can I pay by invoice?")
    zendesk.add_comment(early, agent, "Yes, invoices are fine.")  # before we even asked
    engine = make_engine(adapter={"draft": {"mode": "shadow"}})
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == Counter()  # nothing posted, ever
    zendesk.add_comment(close, agent, "To reset your password, open settings.")
    zendesk.add_comment(far, agent, "We deliver across Europe within five days.")
    assert engine.run_once()
    assert notes_per_ticket(zendesk) == Counter()
    scores = {int(t.ticket_id): t.similarity for t in turns(engine)}
    assert {t.state for t in turns(engine)} == {"shadowed"}
    assert scores[close] > 0.6 > scores[far]
    assert scores[early] is not None
    from connector.cli.status import collect

    shadow = collect(engine.config, engine.db)["adapters"][0]["shadow"]
    assert shadow == {"enabled": True, "answers": 3, "compared_with_agent_reply": 3,
                      "mean_similarity": round(sum(scores.values()) / 3, 3)}


def _sync_spans(uppzy: UppzySimulator) -> int:
    spans = [(r["created_at"], r["completed_at"]) for r in uppzy.requests_for()]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_sync_questions_are_claimed_in_batches_not_one_claim_per_slot(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    monkeypatch: pytest.MonkeyPatch,
):
    """Each answer freed one slot, and each freed slot claimed its one question in a claim
    transaction of its own; now a claim takes the free slots and a quarter of the limit more."""
    uppzy.sync_latency = 0.2
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = [zendesk.create_ticket(customer, f"Sync question {n}") for n in range(40)]
    engine = make_engine(uppzy={"mode": "sync", "sync_concurrency": 8})
    claimed = runtime_module.claims.claim_work
    question_claims: list[int] = []

    def counted(*args, **kwargs):
        tickets_, due = claimed(*args, **kwargs)
        questions = sum(1 for t in due if t.state == "queued")
        if questions:
            question_claims.append(questions)
        return tickets_, due

    monkeypatch.setattr(runtime_module.claims, "claim_work", counted)
    assert engine.run_once()
    assert all(notes_per_ticket(zendesk)[t] == 1 for t in tickets)
    assert sum(question_claims) >= 40
    assert len(question_claims) <= 40 // 2, question_claims
    assert _sync_spans(uppzy) <= 8  # never more at once than the limit


def test_sync_concurrency_unset_follows_the_questions_read(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    """Unset, the limit follows arrivals x answer time (``sync_slots.py``, whose arithmetic
    has tests of its own): every question read is counted, every sync answer timed."""
    uppzy.sync_latency = 0.5
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = [zendesk.create_ticket(customer, f"Sync question {n}") for n in range(30)]
    engine = make_engine(uppzy={"mode": "sync"}, engine={"workers": 2})
    slots = engine.sync_slots
    assert slots is not None and slots.configured is None
    assert engine.run_once()
    assert all(notes_per_ticket(zendesk)[t] == 1 for t in tickets)
    assert 1 < _sync_spans(uppzy) <= sync_slots.CAP
    # 30 questions in the first minute, answered in half a second: the floor is enough.
    assert slots.limit() == sync_slots.FLOOR
    for _ in range(200):
        slots.answered(30.0)  # had they taken 30 s: 1.5 x 30/60 s x 30 s = 23 at once
    assert slots.limit() == 23


def test_a_new_question_is_asked_without_a_claim_of_its_own(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    monkeypatch: pytest.MonkeyPatch,
):
    """A read that finds a new question creates its turn claimed by this instance and hands it
    to the next free worker: claiming it again took a third of all claims. Only the first
    questions read before the first Uppzy call succeeded are claimed, as before: one of them
    is the probe that proves the key."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    engine = make_engine()
    zendesk.create_ticket(customer, "The first question?")
    assert engine.run_once()
    tickets = [zendesk.create_ticket(customer, f"Question {n}?") for n in range(12)]
    claim_turns = runtime_module.claims.claim_turns
    asked_after_claim: list[int] = []

    def counted(*args, **kwargs):
        claimed = claim_turns(*args, **kwargs)
        asked_after_claim.extend(t.id for t in claimed if t.state == "queued")
        return claimed

    monkeypatch.setattr(runtime_module.claims, "claim_turns", counted)
    assert engine.run_once()
    assert all(notes_per_ticket(zendesk)[t] == 1 for t in tickets)
    assert asked_after_claim == []
    assert uppzy.call_count("chat_async") == len(tickets) + 1
    # Every claim was released with its step: nothing is left held by this instance.
    assert all(t.claim_owner is None for t in turns(engine))


def test_a_turn_claimed_again_while_its_step_finishes_is_not_left_claimed(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    monkeypatch: pytest.MonkeyPatch,
):
    """A step's last write releases its turn (here: Uppzy refused the question, so the turn is
    due again to post the fallback note); a dispatch that claims it again before the step has
    ended used to find it still in hand, drop it from the backlog and leave its fresh claim to
    expire: the note waited ``lease_ttl``. With group commit the release and that claim can
    commit together, so this race became likely (a test waiting on it failed under load)."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    engine = make_engine(engine={"lease_ttl": "60s"}, uppzy={"answer_timeout": "5s"})
    zendesk.create_ticket(customer, "The first question?")
    assert engine.run_once()
    uppzy.add_fault(Fault(endpoint="chat_async", status=400, times=1))
    refused = zendesk.create_ticket(customer, "Why was I charged twice?")
    advance = runtime_module.turns.advance
    raced: list[int] = []

    def racing(runtime: Runtime, turn: Turn, seen: Any = None) -> None:
        advance(runtime, turn, seen)
        if turn.outcome == "fallback" and not raced:
            raced.append(turn.id)
            runtime.dispatch()  # the claim that wins the race, as another thread's would

    monkeypatch.setattr(runtime_module.turns, "advance", racing)
    started = time.monotonic()
    assert engine.run_once()  # within answer_timeout + 10 s, far below lease_ttl
    assert raced
    assert notes_per_ticket(zendesk)[refused] == 1
    assert time.monotonic() - started < 15
