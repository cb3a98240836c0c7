"""``retention``: customer text and answers leave the database after a while, work does not."""

from __future__ import annotations

import time

from sqlmodel import Session, select
from test_pipeline import drive, notes_per_ticket, turns

from adapters.zendesk.simulator import ZendeskSimulator
from connector.store.models import MessageRecord, TicketRecord, Turn


def test_old_text_is_forgotten_while_ids_states_and_deduplication_stay(
    make_engine, zendesk: ZendeskSimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    done = zendesk.create_ticket(customer, "My secret order number is 4711?")
    engine = make_engine(retention="1s")
    drive(engine, lambda: notes_per_ticket(zendesk)[done] == 1 and not engine.busy())
    time.sleep(1.2)
    waiting = zendesk.create_ticket(customer, "A question still being worked on?")
    engine.uppzy.submit = lambda *a, **k: (_ for _ in ()).throw(SystemError("held"))  # type: ignore[method-assign]
    drive(engine, lambda: len(turns(engine)) == 2)
    engine._next_retention = 0.0
    engine.housekeeping()
    with Session(engine.db) as db:
        old = db.exec(select(Turn).where(Turn.ticket_id == str(done))).one()
        assert (old.state, old.question, old.answer) == ("posted", "", None)
        assert old.request_id and old.posted_id and old.answered_at  # ids and timings stay
        bodies = {m.ticket_id: m.body for m in db.exec(select(MessageRecord))
                  if m.role == "customer"}
        assert bodies[str(done)] == ""
        active = db.exec(select(Turn).where(Turn.ticket_id == str(waiting))).one()
        assert active.question == "A question still being worked on?"
    zendesk.add_tags(done, "vip")  # the ticket changes: read again, nothing new to answer
    drive(engine, lambda: not any(r.needs_sync for r in records(engine)))
    assert notes_per_ticket(zendesk)[done] == 1
    assert len(turns(engine)) == 2


def records(engine) -> list[TicketRecord]:  # type: ignore[no-untyped-def]
    with Session(engine.db) as db:
        return list(db.exec(select(TicketRecord)))
