"""Reading an Intercom conversation: its state as a ``Ticket``, its source and parts as messages.

Intercom keeps the first message in the conversation's ``source`` (which has no time of its own:
it is the conversation's ``created_at``) and everything after it in ``conversation_parts``, each
with a ``part_type`` and an author whose ``type`` says who wrote it. Who may start a turn is
decided here, once: only a contact's words (the source, or a ``comment``); an admin's comment or
note is an agent's, and whatever a bot (Fin, workflows) writes or any other part type (state
changes, assignments) is the system's.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from adapters.base import Message, Role, Ticket, as_dict
from adapters.payload import record_id, text_or_none, text_set, unix_time
from adapters.text import body_text, clean_body

log = logging.getLogger(__name__)

CUSTOMER_AUTHORS = frozenset({"user", "lead", "contact"})
AGENT_AUTHORS = frozenset({"admin", "team"})
RESOLVED_STATES = frozenset({"closed"})  # snoozed comes back by itself: not resolved
SOURCE_PREFIX = "source-"  # a source id may equal some part's id; this prefix never does


def read_ticket(raw: dict[str, Any], name: str) -> Ticket:
    """A conversation (from search or a read) as the engine's ticket; MalformedResponse when
    it has no usable id, which the caller turns into skipping it alone."""
    state = text_or_none(raw.get("state")) or "unknown"
    source = as_dict(raw.get("source"))
    author = as_dict(source.get("author"))
    contacts = as_dict(raw.get("contacts")).get("contacts")
    first_contact = as_dict(contacts[0]) if isinstance(contacts, list) and contacts else {}
    tags = as_dict(raw.get("tags")).get("tags")
    tag_names = [as_dict(tag).get("name") for tag in tags] if isinstance(tags, list) else []
    return Ticket(
        external_id=record_id(raw, f"{name}: conversation"),
        status=state,
        resolved=state in RESOLVED_STATES,
        updated_at=unix_time(raw.get("updated_at")),
        subject=text_or_none(source.get("subject")) or text_or_none(raw.get("title")),
        requester_id=text_or_none(first_contact.get("id")),
        requester_email=text_or_none(author.get("email"))
        if author.get("type") in CUSTOMER_AUTHORS else None,
        channel=text_or_none(source.get("type")),
        tags=text_set(tag_names),
    )


def source_message(raw: dict[str, Any], ticket_id: str) -> Message | None:
    """The conversation's first message; None (logged by ids only) when it cannot be read."""
    source = as_dict(raw.get("source"))
    source_id = text_or_none(source.get("id"))
    created_at = unix_time(raw.get("created_at"))
    html = source.get("body")
    if not source_id or created_at is None or (html is not None and not isinstance(html, str)):
        log.warning("conversation %s: skipped its first message: no id, time or text body",
                    ticket_id)
        return None
    author = as_dict(source.get("author"))
    role = _author_role(author.get("type"))
    return Message(
        external_id=SOURCE_PREFIX + source_id, ticket_id=ticket_id, created_at=created_at,
        role=role, public=role is not Role.SYSTEM,
        body=clean_body(html=html) if role is Role.CUSTOMER else body_text(html=html),
        author_id=text_or_none(author.get("id")),
    )


def part_message(part: dict[str, Any], part_id: str, created_at: datetime,
                 ticket_id: str) -> Message | None:
    """One conversation part as a message; None (logged by ids only) for a body that is not
    text."""
    html = part.get("body")
    if html is not None and not isinstance(html, str):
        log.warning("conversation %s: skipped part %s: its body is not text", ticket_id, part_id)
        return None
    author = as_dict(part.get("author"))
    role, public = part_role(part.get("part_type"), author.get("type"))
    return Message(
        external_id=part_id, ticket_id=ticket_id, created_at=created_at, role=role,
        public=public,
        body=clean_body(html=html) if role is Role.CUSTOMER else body_text(html=html),
        author_id=text_or_none(author.get("id")),
    )


def part_role(part_type: Any, author_type: Any) -> tuple[Role, bool]:
    """Who speaks in a part and whether the customer sees it. A bot's part is the system's
    whatever its type (Fin answers in comments); a part type Intercom adds later is too."""
    if author_type == "bot":
        return Role.SYSTEM, part_type == "comment"
    if part_type == "comment":
        return _author_role(author_type), True
    if part_type == "note":
        return Role.AGENT, False
    return Role.SYSTEM, False


def _author_role(author_type: Any) -> Role:
    if author_type in CUSTOMER_AUTHORS:
        return Role.CUSTOMER
    return Role.AGENT if author_type in AGENT_AUTHORS else Role.SYSTEM


def parts_of(raw: dict[str, Any]) -> list[Any]:
    """The conversation's parts, oldest first (the 500 most recent, as Intercom returns them)."""
    parts = as_dict(raw.get("conversation_parts")).get("conversation_parts")
    return parts if isinstance(parts, list) else []
