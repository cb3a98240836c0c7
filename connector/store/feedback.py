"""Feedback rows owed to Uppzy for an agent's rating tag: one per request, sent once.

The rating and whether the ticket's tags carry one are the engine's decision; here is what
makes it happen once, in the transaction of the read that saw the tag: a value already queued
for the ticket is not queued again, and an implicit rating not sent yet gives way to the tag.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlmodel import Session, col, select

from connector.store.adoption import tag_replaces_implicit
from connector.store.models import Feedback, Turn


class Queued(NamedTuple):
    request_id: str
    replaced: bool  # it took the place of an implicit rating not sent yet


def queue_tag(db: Session, adapter: str, ticket_id: str, value: str,
              now: datetime) -> Queued | None:
    """Owe Uppzy ``value`` for the ticket's latest answered request, unless that value was
    already queued for the ticket or the request is rated already (by an agent's tag)."""
    already = db.exec(select(Feedback.id).where(
        Feedback.adapter == adapter, Feedback.ticket_id == ticket_id, Feedback.value == value,
    )).first()
    if already is not None:
        return None
    latest = db.exec(select(Turn).where(
        Turn.adapter == adapter, Turn.ticket_id == ticket_id,
        col(Turn.request_id).is_not(None), col(Turn.answer).is_not(None),
    ).order_by(col(Turn.id).desc())).first()
    if latest is None or latest.request_id is None:
        return None
    if db.exec(select(Feedback.id).where(Feedback.request_id == latest.request_id)).first():
        if tag_replaces_implicit(db, latest.request_id, value, now):
            return Queued(latest.request_id, replaced=True)
        return None
    db.add(Feedback(
        adapter=adapter, ticket_id=ticket_id, session_id=latest.session_id,
        site_id=latest.site_id, request_id=latest.request_id, value=value,
    ))
    return Queued(latest.request_id, replaced=False)
