"""Forgetting customer text after ``retention``: the privacy half of keeping state.

The store needs message bodies and answers only while a turn is worked on and for a while after
(shadow comparisons, an operator looking into a complaint). Past ``retention`` the text goes:
message bodies, questions and answers are blanked, while ids, states, reasons and timings stay,
so deduplication, ``status`` and metrics are unchanged. A turn still in progress is never
touched, however old. Work is done in bounded batches, so a first run on a large database
does not hold the write lock for long.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select, update

from connector.store.db import session_scope
from connector.store.models import ACTIVE_TURN_STATES, MessageRecord, Turn

BATCH = 1000


def forget_text(engine: Engine, before: datetime) -> int:
    """Blank the text of messages and ended turns older than ``before``; returns the rows
    changed in this call (at most ``BATCH`` of each kind: the rest goes in later calls)."""
    with session_scope(engine) as db:
        messages = db.execute(select(MessageRecord.id).where(
            MessageRecord.created_at < before, MessageRecord.body != "",
        ).limit(BATCH)).scalars().all()
        if messages:
            db.execute(update(MessageRecord).where(MessageRecord.id.in_(messages))  # type: ignore[union-attr]
                       .values(body=""))
        turns = db.execute(select(Turn.id).where(
            Turn.updated_at < before, Turn.state.not_in(ACTIVE_TURN_STATES),  # type: ignore[attr-defined]
            (Turn.question != "") | Turn.answer.is_not(None),  # type: ignore[union-attr]
        ).limit(BATCH)).scalars().all()
        if turns:
            db.execute(update(Turn).where(Turn.id.in_(turns))  # type: ignore[union-attr]
                       .values(question="", answer=None))
    return len(messages) + len(turns)
