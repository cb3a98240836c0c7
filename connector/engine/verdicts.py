"""Judging posted drafts: when an agent answers after a draft, what did they do with it?

Called from the conversation read, in its transaction, once the new messages are stored: the
first public agent reply after the customer's message is the agent's answer (or, where the
helpdesk has real drafts, the draft itself once it shows as sent). The verdict is written once
(``store.adoption``); with ``feedback.implicit`` it also owes Uppzy a rating for the request,
sent after ``feedback.implicit_delay`` so that an agent's tag seen meanwhile wins.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session

from adapters.base import Message, Role
from connector.config import FeedbackSettings
from connector.engine import replies
from connector.engine.adoption import Adoption, judge
from connector.engine.turn_records import turn_fields
from connector.store import adoption as store
from connector.store.db import session_scope
from connector.store.models import TicketRecord, utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)


def judge_ticket(engine: Runtime, db: Session, record: TicketRecord,
                 messages: list[Message]) -> None:
    """Give each of the ticket's pending drafts its verdict, where an agent has answered."""
    drafts = store.undecided_drafts(db, record.adapter, record.external_id)
    if not drafts:
        return
    settings, template = engine.config.adoption, engine.config.draft.template
    sent = {m.external_id: m for m in messages if m.public and m.role == Role.AGENT}
    now = utcnow()
    for turn in drafts:
        reply = sent.get(turn.posted_id or "") or replies.agent_reply_after(db, turn)
        if reply is None:
            continue
        verdict, score = judge(turn.answer or "", reply.body, template,
                               settings.used_threshold, settings.edited_threshold)
        if not store.record_verdict(db, turn, verdict.value, score, reply.created_at, now):
            continue
        log.info("turn %d: draft %s (similarity %.2f)", turn.id, verdict.value, score,
                 extra=turn_fields(turn))
        engine.emit("draft_adopted", **turn_fields(turn), outcome=verdict.value, score=score)
        value = implicit_rating(engine.config.feedback, verdict)
        delay = timedelta(seconds=engine.config.feedback.implicit_delay)
        if value and store.queue_implicit_feedback(db, turn, value, now + delay):
            log.info("turn %d: implicit %s feedback queued for %s", turn.id, value,
                     turn.request_id, extra=turn_fields(turn))


def implicit_rating(settings: FeedbackSettings, verdict: Adoption) -> str | None:
    """The rating a verdict implies, when the team asked for implicit feedback."""
    if not settings.implicit:
        return None
    if verdict is Adoption.USED:
        return "good"
    if verdict is Adoption.DISCARDED:
        return "bad"
    return settings.implicit_edited if verdict is Adoption.EDITED else None


def expire(engine: Runtime) -> None:
    """Drafts nobody answered within ``adoption.window`` stop waiting for a verdict."""
    now = utcnow()
    with session_scope(engine.db) as db:
        expired = store.expire_drafts(db, now - timedelta(seconds=engine.config.adoption.window),
                                      now)
    for adapter, count in expired.items():
        log.info("%d draft(s) of %s expired without an agent reply", count, adapter)
        engine.emit("drafts_expired", adapter=adapter, count=count)
