"""Judging posted drafts: when an agent answers after a draft, what did they do with it?

Decided during the conversation read, from what it found: the first public agent reply after
the customer's message is the agent's answer (or, where the helpdesk has real drafts, the draft
itself once it shows as sent). The verdict is written once, in the read's transaction
(``store.conversation``); with ``feedback.implicit`` it also owes Uppzy a rating for the
request, sent after ``feedback.implicit_delay`` so that an agent's tag seen meanwhile wins.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from adapters.base import Message, Role
from connector.config import FeedbackSettings
from connector.engine import replies
from connector.engine.adoption import Adoption, judge
from connector.engine.turn_records import turn_fields
from connector.store import adoption as store
from connector.store.conversation import Applied, Verdict
from connector.store.messages import Awaiting, NewMessage
from connector.store.models import utcnow

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)


def judge_drafts(engine: Runtime, drafts: list[Awaiting], messages: list[Message],
                 new: list[NewMessage], now: datetime) -> list[Verdict]:
    """The verdict on each of the ticket's pending drafts that an agent has answered."""
    if not drafts:
        return []
    settings, template = engine.config.adoption, engine.config.draft.template
    sent = {m.external_id: m for m in messages if m.public and m.role == Role.AGENT}
    rating_after = now + timedelta(seconds=engine.config.feedback.implicit_delay)
    found: list[Verdict] = []
    for waiting in drafts:
        turn = waiting.turn
        reply = sent.get(turn.posted_id or "") or replies.reply_to(waiting, new)
        if reply is None:
            continue
        verdict, score = judge(turn.answer or "", reply.body, template,
                               settings.used_threshold, settings.edited_threshold)
        found.append(Verdict(turn, verdict.value, score, reply.created_at,
                             implicit_rating(engine.config.feedback, verdict), rating_after))
    return found


def announce(engine: Runtime, applied: Applied) -> None:
    """Log and emit the verdicts a read recorded (another read may have decided the rest)."""
    for verdict in applied.verdicts:
        turn = verdict.turn
        log.info("turn %d: draft %s (similarity %.2f)", turn.id, verdict.adoption,
                 verdict.score, extra=turn_fields(turn))
        engine.emit("draft_adopted", **turn_fields(turn), outcome=verdict.adoption,
                    score=verdict.score)
        if any(rating is verdict for rating in applied.ratings):
            log.info("turn %d: implicit %s feedback queued for %s", turn.id, verdict.rating,
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
    expired = store.expire_drafts(
        engine.db, now - timedelta(seconds=engine.config.adoption.window), now)
    for adapter, count in expired.items():
        log.info("%d draft(s) of %s expired without an agent reply", count, adapter)
        engine.emit("drafts_expired", adapter=adapter, count=count)
