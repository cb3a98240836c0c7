"""No re-read of a ticket that only our own note changed, and never a lost customer message.

In-process engine over real HTTP against the Zendesk simulator, whose export carries the
``comment_count`` side-load: counting every comment (the default) or public ones only, since
which of the two real Zendesk does is not confirmed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select
from support import claim_reads

from adapters.base import Message, Role
from adapters.simulation import SimRequest, SimResponse
from adapters.zendesk.simulator import ZendeskSimulator
from connector.engine import conversation
from connector.engine.runtime import Runtime
from connector.store import conversation as store_conversation
from connector.store import tickets
from connector.store.db import session_scope
from connector.store.models import TicketRecord, Turn, TurnState, utcnow
from connector.testing.uppzy_sim import UppzySimulator

MakeEngine = Callable[..., Runtime]


def reads(zendesk: ZendeskSimulator, tid: int) -> int:
    """Conversation reads of one ticket so far."""
    return sum(1 for c in zendesk.calls
               if c.endpoint == "ticket_comments" and f"/tickets/{tid}/" in c.path)


def notes(zendesk: ZendeskSimulator, tid: int) -> list[str]:
    return [n["body"] for n in zendesk.notes_by(zendesk.bot_user_id) if n["ticket_id"] == tid]


def row(engine: Runtime, tid: int) -> TicketRecord:
    with Session(engine.db) as db:
        record = db.exec(select(TicketRecord).where(TicketRecord.external_id == str(tid))).one()
        db.expunge(record)
        return record


def calibrate(engine: Runtime, zendesk: ZendeskSimulator) -> None:
    """Two tickets whose reads hold a private message and match the count: trust is learned."""
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    customer = zendesk.add_user("Calib", "end-user", "calib@example.org")
    tickets = [zendesk.create_ticket(customer, f"Question {n}") for n in (1, 2)]
    for tid in tickets:
        zendesk.add_comment(tid, agent, "Internal: VIP.", public=False)
    assert engine.run_once()
    assert "zd" in engine.counts_private
    assert all(len(notes(zendesk, tid)) == 1 for tid in tickets)


def test_our_note_causes_no_reread_once_the_count_is_known_to_include_private_ones(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first = zendesk.create_ticket(customer, "Where is my order?")
    other = zendesk.create_ticket(customer, "Where is my refund?")
    engine = make_engine()
    assert engine.run_once()
    assert len(notes(zendesk, first)) == 1 and reads(zendesk, first) == 1
    assert "zd" not in engine.counts_private  # only public messages read so far: no proof
    # Our notes bumped the tickets: not trusted yet, so both are read, and each read proves the
    # count includes private messages (2 reported, 2 read, one of them our private note); two
    # tickets agreeing are what it takes.
    assert engine.run_once()
    assert reads(zendesk, first) == 2 and reads(zendesk, other) == 2
    assert "zd" in engine.counts_private
    record = row(engine, first)
    assert (record.reported_messages, record.known_messages) == (2, 2)

    second = zendesk.create_ticket(customer, "And the invoice?")
    assert engine.run_once()
    assert len(notes(zendesk, second)) == 1 and reads(zendesk, second) == 1
    assert row(engine, second).known_messages == 2  # one read + our note
    polls = sum(1 for c in zendesk.calls if c.endpoint == "incremental_tickets")
    assert engine.run_once()  # the feed reports the ticket our note bumped...
    assert sum(1 for c in zendesk.calls if c.endpoint == "incremental_tickets") > polls
    assert reads(zendesk, second) == 1  # ...and it is not read again
    record = row(engine, second)
    assert not record.needs_sync and record.reported_messages == 2
    assert len(notes(zendesk, second)) == 1

    # The next customer message is read and answered as always.
    zendesk.add_comment(second, customer, "Any news?")
    assert engine.run_once()
    assert reads(zendesk, second) == 2 and len(notes(zendesk, second)) == 2
    assert uppzy.questions(f"zd-{second}") == ["And the invoice?", "Any news?"]


def test_customer_message_in_the_same_second_as_our_note_is_still_answered(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    engine = make_engine()
    calibrate(engine, zendesk)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Can I change the address?")
    assert engine.run_once()
    assert len(notes(zendesk, tid)) == 1

    def same_second_as_our_note(text: str) -> None:
        zendesk.add_comment(tid, customer, text)
        with zendesk.lock:
            ticket = zendesk.tickets[tid]
            ours = next(c for c in reversed(ticket.comments)
                        if c.author_id == zendesk.bot_user_id)
            ticket.comments[-1].created_at = ours.created_at
            ticket.updated_at = ours.created_at

    # Right after our note, before any poll: the feed reports both changes at once.
    same_second_as_our_note("Also, the phone number.")
    assert engine.run_once()
    assert len(notes(zendesk, tid)) == 2
    assert uppzy.questions(f"zd-{tid}")[-1] == "Also, the phone number."

    # A poll between our note and the customer's message: that report is skipped, the next is
    # not, whatever the timestamps say.
    reads_before = reads(zendesk, tid)
    engine.poll("zd")
    assert not row(engine, tid).needs_sync and reads(zendesk, tid) == reads_before
    same_second_as_our_note("And the e-mail.")
    assert engine.run_once()
    assert len(notes(zendesk, tid)) == 3
    assert uppzy.questions(f"zd-{tid}")[-1] == "And the e-mail."


def test_public_only_counts_are_never_trusted_and_no_follow_up_is_lost(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    zendesk.comment_count_public_only = True
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    plain = zendesk.create_ticket(customer, "Question A")
    noted = zendesk.create_ticket(customer, "Question B")
    zendesk.add_comment(noted, agent, "Internal: check the stock.", public=False)
    engine = make_engine()
    rounds = 4
    for n in range(rounds):
        assert engine.run_once()  # the question is read and answered
        assert engine.run_once()  # our note bumped the ticket: read again, nothing to answer
        for tid in (plain, noted):
            assert len(notes(zendesk, tid)) == n + 1
            # Were the public-only count trusted, "known" (which counts our note) would equal
            # the next report here, and this follow-up would be skipped.
            zendesk.add_comment(tid, customer, f"Follow-up {n} on {tid}")
    assert engine.run_once()
    assert "zd" not in engine.counts_private
    for tid, first in ((plain, "Question A"), (noted, "Question B")):
        assert len(notes(zendesk, tid)) == rounds + 1
        assert uppzy.questions(f"zd-{tid}") == [first] + [
            f"Follow-up {n} on {tid}" for n in range(rounds)]
        # Every report was read: the question, our note's bump, and each follow-up.
        assert reads(zendesk, tid) == 2 * rounds + 1


def test_without_the_side_load_every_report_is_read_as_before(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    monkeypatch: pytest.MonkeyPatch,
):
    export = zendesk.handle_incremental_tickets

    def without_counts(request: SimRequest) -> SimResponse:
        response = export(request)
        for ticket in response.body.get("tickets", []) if isinstance(response.body, dict) else []:
            ticket.pop("comment_count", None)
        return response

    monkeypatch.setattr(zendesk, "handle_incremental_tickets", without_counts)
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question")
    zendesk.add_comment(tid, agent, "Internal: VIP.", public=False)
    engine = make_engine()
    assert engine.run_once()
    assert engine.run_once()
    assert reads(zendesk, tid) == 2 and len(notes(zendesk, tid)) == 1
    assert "zd" not in engine.counts_private
    record = row(engine, tid)
    assert (record.reported_messages, record.known_messages) == (None, None)
    zendesk.add_comment(tid, customer, "Follow-up")
    assert engine.run_once()
    assert engine.run_once()
    assert reads(zendesk, tid) == 4 and len(notes(zendesk, tid)) == 2


def test_resolving_or_tagging_with_an_unchanged_count_is_still_processed(
    make_engine: MakeEngine, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    engine = make_engine()
    calibrate(engine, zendesk)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    rated = zendesk.create_ticket(customer, "Rate this")
    solved = zendesk.create_ticket(customer, "Solve this")
    assert engine.run_once()
    assert engine.run_once()  # our notes' bumps: skipped
    assert reads(zendesk, rated) == 1 and reads(zendesk, solved) == 1

    zendesk.add_tags(rated, "ai_good")
    zendesk.set_status(solved, "solved")
    assert engine.run_once()
    assert reads(zendesk, rated) == 2 and reads(zendesk, solved) == 2
    request_id = uppzy.requests_for(f"zd-{rated}")[0]["request_id"]
    assert uppzy.feedback_recorded().get(request_id) == "good"
    assert uppzy.closed_sessions().get(f"zd-{solved}") == 1
    assert row(engine, solved).resolved


def test_counts_are_unknown_while_our_post_may_be_in_flight_or_after_a_reconciliation(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
):
    """A read during a post may or may not hold our note: its +1 could count it twice."""
    engine = make_engine()
    now = utcnow()
    messages = [Message("1", "7", now, Role.CUSTOMER, True, "q"),
                Message("2", "7", now, Role.AGENT, False, "note")]
    with session_scope(engine.db) as db:
        db.add(TicketRecord(adapter="zd", external_id="7", reported_messages=2, change_seq=1))
        db.add(Turn(adapter="zd", ticket_id="7", session_id="zd-7", site_id="s",
                    state=TurnState.POSTING, last_message_id="1", last_message_at=now))
    engine.count_proofs["zd"] = {"6"}  # one other ticket proved it already
    seen = store_conversation.read(engine.db, "zd", "7", ["1", "2"], epoch=False, shadow=False)
    assert seen.ticket is not None and seen.posting
    assert conversation._count_read(engine, seen.ticket, messages, 1, posting=seen.posting) \
        is None
    assert "zd" in engine.counts_private  # the calibration itself does not depend on it
    with session_scope(engine.db) as db:
        db.execute(update(TicketRecord).values(known_messages=2))
        tickets.count_own_post(db, "zd", "7", counted=True)
    assert _known(engine) == 3
    with session_scope(engine.db) as db:
        tickets.count_own_post(db, "zd", "7", counted=False)  # found again by its marker
    assert _known(engine) is None
    with session_scope(engine.db) as db:
        tickets.count_own_post(db, "zd", "7", counted=True)  # unknown stays unknown
    assert _known(engine) is None


def _known(engine: Runtime) -> Any:
    with Session(engine.db) as db:
        return db.exec(select(TicketRecord.known_messages)).one()


def test_one_ticket_proving_the_counts_is_not_enough(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
) -> None:
    """A single read could match a public-only count by accident (a comment the adapter dropped
    as malformed); trust needs two tickets that agree."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first = zendesk.create_ticket(customer, "Only one")
    engine = make_engine()
    assert engine.run_once()
    assert engine.run_once()  # the read of our note proves it once
    assert reads(zendesk, first) == 2
    assert engine.count_proofs["zd"] == {str(first)} and "zd" not in engine.counts_private


def test_the_read_that_can_prove_the_counts_goes_before_a_backlog_of_first_reads(
    make_engine: MakeEngine, zendesk: ZendeskSimulator
) -> None:
    """Until the counts are trusted, the ticket our own note changed (the one read that can
    prove them) is read first, not after every new ticket of a burst: otherwise every note of
    the burst costs a second read."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first = zendesk.create_ticket(customer, "Before the burst")
    engine = make_engine()
    assert engine.run_once()  # answered; the report of our note is not polled yet
    assert len(notes(zendesk, first)) == 1 and "zd" not in engine.counts_private
    burst = [zendesk.create_ticket(customer, f"Burst {n}") for n in range(30)]
    engine.poll("zd")
    with session_scope(engine.db) as db:  # the burst has waited in the backlog for a while
        db.execute(update(TicketRecord).where(TicketRecord.external_id != str(first))
                   .values(sync_after=utcnow() - timedelta(minutes=10)))
    claimed = claim_reads(engine, 1)
    assert [r.external_id for r in claimed] == [str(first)]
    assert all(row(engine, t).needs_sync for t in burst)
