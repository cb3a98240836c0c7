"""The reads of the operator's reports: ``connector report``'s turns of a window of time and
``connector sessions``' list of our Uppzy sessions.

The commands know no SQL, so their queries are here; each function reads in one session that
writes nothing and is rolled back when it closes. Rows come back as plain values or detached
(loaded) instances, for use after it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from connector.store.models import ChatSession, MessageRecord, Turn


@dataclass(frozen=True)
class ReportRow:
    """One turn of the report's window, with what happened to it."""

    adapter: str
    state: str
    outcome: str | None  # draft | fallback (answered turns)
    adoption: str | None
    confidence_level: str | None
    confidence_score: float | None
    similarity: float | None  # shadow mode
    customer_at: datetime
    posted_at: datetime | None
    first_agent_reply_at: datetime | None
    reason: str | None


def report_rows(engine: Engine, since: datetime, until: datetime,
                adapter: str | None = None) -> list[ReportRow]:
    """Turns whose customer message falls in the window, each with the first public agent
    reply after that message (None when nobody replied yet)."""
    asked = select(MessageRecord.id).where(
        MessageRecord.adapter == Turn.adapter,
        MessageRecord.external_id == Turn.last_message_id).correlate(Turn).scalar_subquery()
    first_reply = select(func.min(MessageRecord.created_at)).where(
        MessageRecord.adapter == Turn.adapter, MessageRecord.ticket_id == Turn.ticket_id,
        MessageRecord.role == "agent", col(MessageRecord.public), ~col(MessageRecord.ours),
        col(MessageRecord.id) > func.coalesce(asked, 0),
    ).correlate(Turn).scalar_subquery()
    query = select(Turn.adapter, Turn.state, Turn.outcome, Turn.adoption, Turn.confidence_level,
                   Turn.confidence_score, Turn.similarity, Turn.last_message_at, Turn.posted_at,
                   first_reply, Turn.reason).where(
        Turn.last_message_at >= since, Turn.last_message_at < until)
    if adapter is not None:
        query = query.where(Turn.adapter == adapter)
    with Session(engine) as db:
        return [ReportRow(*row) for row in db.exec(query.order_by(col(Turn.id))).all()]


def chat_sessions(engine: Engine, adapters: Collection[str],
                  states: Collection[str] | None = None) -> list[ChatSession]:
    """Our sessions of ``adapters`` (in ``states``, when given), oldest first."""
    query = select(ChatSession).where(col(ChatSession.adapter).in_(adapters)) \
        .order_by(col(ChatSession.created_at))
    if states is not None:
        query = query.where(col(ChatSession.state).in_(states))
    with Session(engine) as db:
        return list(db.exec(query))
