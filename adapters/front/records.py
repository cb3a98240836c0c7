"""Front's JSON records as the engine's tickets and messages.

A Front conversation holds three kinds of entries the API lists apart: messages (sent and
received), comments (teammates' internal discussion) and drafts. Who speaks is decided here, in
one place, from what Front says about each entry (see docs/adapters/front.md for the sources).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from adapters.base import Message, Role, Ticket, as_dict
from adapters.payload import prefixed_id, text_or_none, unix_time
from adapters.text import body_text, clean_body
from connector.core.errors import MalformedResponse

RESOLVED_STATUSES = frozenset({"archived", "deleted"})
RESOLVED_CATEGORY = "resolved"  # Front ticketing's category of every "done" status
HUMAN_TEAMMATES = frozenset({"user", "visitor"})
"""Teammate types that are people; every other type is a bot acting for a rule, a macro, an AI,
an app... whose messages never start or answer a turn."""
INTERNAL_TYPE = "internal"  # a message type only teammates see


class Entry(Enum):
    """The three lists a conversation's entries come from."""

    MESSAGE = "message"
    COMMENT = "comment"
    DRAFT = "draft"


def conversation_ticket(raw: dict[str, Any]) -> Ticket:
    """The ticket a conversation record describes; MalformedResponse without a ``cnv_`` id."""
    conversation_id = prefixed_id(raw.get("id"), "cnv")
    if conversation_id is None:
        raise MalformedResponse("front: conversation without a cnv_ id")
    status = text_or_none(raw.get("status")) or "unknown"
    category = text_or_none(raw.get("status_category"))
    recipient = as_dict(raw.get("recipient"))
    handle = text_or_none(recipient.get("handle"))
    tags = raw.get("tags") if isinstance(raw.get("tags"), list) else []
    return Ticket(
        external_id=conversation_id,
        status=f"{status} ({category})" if category else status,
        resolved=status in RESOLVED_STATUSES or category == RESOLVED_CATEGORY,
        updated_at=unix_time(raw.get("updated_at")) or unix_time(raw.get("created_at")),
        subject=text_or_none(raw.get("subject")),
        requester_id=handle,
        requester_email=handle if handle and "@" in handle else None,
        tags=frozenset(name for tag in tags
                       if isinstance(name := as_dict(tag).get("name"), str)),
    )


def entry_time(kind: Entry) -> str:
    """The key of an entry's creation time: comments are ``posted_at``, the rest ``created_at``."""
    return "posted_at" if kind is Entry.COMMENT else "created_at"


def entry_message(
    entry: dict[str, Any], entry_id: str, created_at: datetime, conversation_id: str,
    kind: Entry,
) -> Message | None:
    """The message one entry is, or None when its body is no text (logged by the caller)."""
    html = entry.get("body")
    text = entry.get("text")
    if (html is not None and not isinstance(html, str)) or \
            (text is not None and not isinstance(text, str)):
        return None
    author = as_dict(entry.get("author"))
    role = _role(entry, author, kind)
    if kind is Entry.COMMENT:
        body = body_text(text=html)  # comments are plain text in Front
    elif role is Role.CUSTOMER:
        body = clean_body(text, html)
    else:
        body = body_text(text, html)
    return Message(
        external_id=entry_id,
        ticket_id=conversation_id,
        created_at=created_at,
        role=role,
        public=kind is Entry.MESSAGE and not is_draft(entry) and
        entry.get("type") != INTERNAL_TYPE,
        body=body,
        author_id=prefixed_id(author.get("id"), "tea"),
    )


def is_draft(entry: dict[str, Any]) -> bool:
    """Front marks a draft by its ``draft_mode`` (older documents: ``is_draft``)."""
    return entry.get("draft_mode") in ("shared", "private") or entry.get("is_draft") is True


def _role(entry: dict[str, Any], author: dict[str, Any], kind: Entry) -> Role:
    """Inbound messages are the customer's; everything else is a teammate's, unless no person
    wrote it (no author, or a bot teammate), which makes it automatic."""
    if kind is Entry.MESSAGE and entry.get("is_inbound") is True and \
            entry.get("type") != INTERNAL_TYPE and not is_draft(entry):
        return Role.CUSTOMER
    if not author.get("id"):
        return Role.SYSTEM
    kind_of_author = author.get("type")
    if kind_of_author is None or kind_of_author in HUMAN_TEAMMATES:
        return Role.AGENT
    return Role.SYSTEM
