"""What agents answered: the reply that makes a draft pointless, and shadow-mode comparison.

Stored message rows follow conversation order (a ticket's messages are stored in the order the
helpdesk lists them), so "after the customer's message" is decided by row id: timestamps, with
whole seconds, cannot order a question and a reply written in the same second.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from connector.engine.adoption import similarity
from connector.store.models import MessageRecord, Turn, TurnState


def agent_reply_after(db: Session, turn: Turn) -> MessageRecord | None:
    """The first public reply by a human agent after the turn's last customer message."""
    asked = db.exec(select(MessageRecord.id).where(
        MessageRecord.adapter == turn.adapter, MessageRecord.external_id == turn.last_message_id,
    )).first()
    return db.exec(select(MessageRecord).where(
        MessageRecord.adapter == turn.adapter, MessageRecord.ticket_id == turn.ticket_id,
        MessageRecord.role == "agent", col(MessageRecord.public), ~col(MessageRecord.ours),
        col(MessageRecord.id) > (asked or 0),
    ).order_by(col(MessageRecord.id))).first()


def compare_shadowed(db: Session, adapter: str, ticket_id: str) -> int:
    """Score the ticket's shadow answers that now have an agent reply; returns how many."""
    scored = 0
    for turn in db.exec(select(Turn).where(
        Turn.adapter == adapter, Turn.ticket_id == ticket_id,
        Turn.state == TurnState.SHADOWED, col(Turn.similarity).is_(None),
        col(Turn.answer).is_not(None),
    )):
        reply = agent_reply_after(db, turn)
        if reply is not None:
            turn.similarity = similarity(turn.answer or "", reply.body)
            db.add(turn)
            scored += 1
    return scored
