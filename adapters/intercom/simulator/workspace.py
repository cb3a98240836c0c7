"""The state an Intercom workspace holds, for the simulator: admins, contacts, conversations.

Kept apart from the HTTP side (``adapters.intercom.simulator``) so each stays small. Everything
is shaped as Intercom's API 2.11 writes it: ids are strings of digits (contacts: hex), times are
Unix seconds, bodies are HTML, and a conversation is its ``source`` (the first message) followed
by ``conversation_parts``. Callers hold the simulator's lock.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

MAX_PARTS = 500  # a read returns at most the 500 most recent parts
CUSTOMER_TYPES = ("user", "lead")


@dataclass
class Person:
    """An admin (teammate), a bot, or a contact (``user``/``lead``), as parts name authors."""

    id: str
    type: str
    name: str
    email: str | None = None

    def author(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "name": self.name, "email": self.email or ""}


@dataclass
class Part:
    id: str
    part_type: str  # comment, note, open, close, snoozed, assignment, ...
    body: str | None  # HTML; events have none
    author: Person
    created_at: int


@dataclass
class Conversation:
    id: str
    created_at: int
    updated_at: int
    source_id: str
    source_type: str  # conversation (Messenger), email, ...
    subject: str
    body: str
    author: Person
    state: str = "open"
    parts: list[Part] = field(default_factory=list)
    snoozed_until: int | None = None
    deleted: bool = False
    restricted: bool = False  # the token's app may not read it: 403
    corrupt: bool = False  # its newest part is served without id and with a body of wrong type


def paragraphs(text: str) -> str:
    """Plain text as the HTML Intercom stores for a message."""
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>"
                   for p in re.split(r"\n\s*\n", text.strip()) if p)


class Workspace:
    """One workspace's people and conversations; ``clock`` gives Unix seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.people: dict[str, Person] = {}
        self.conversations: dict[str, Conversation] = {}
        self._ids = itertools.count(1000)
        self._part_ids = itertools.count(1)

    def now(self) -> int:
        return int(self.clock())

    def add_admin(self, name: str, email: str, *, kind: str = "admin") -> str:
        """A teammate (``kind="admin"``) or a bot (``"bot"``, e.g. Fin); returns its id."""
        person = Person(str(next(self._ids)), kind, name, email)
        self.people[person.id] = person
        return person.id

    def add_contact(self, name: str, email: str | None, *, kind: str = "user") -> str:
        person = Person(secrets.token_hex(12), kind, name, email)
        self.people[person.id] = person
        return person.id

    def open_conversation(self, contact: str, body: str, *, subject: str = "",
                          html: bool = False, source_type: str = "conversation") -> str:
        """A contact writes in: the conversation's ``source`` is the first message."""
        stamp = self.now()
        conversation = Conversation(
            id=str(next(self._ids)), created_at=stamp, updated_at=stamp,
            source_id=str(next(self._ids)), source_type=source_type, subject=subject,
            body=body if html else paragraphs(body), author=self.people[contact],
        )
        self.conversations[conversation.id] = conversation
        return conversation.id

    def add_part(self, conversation_id: str, author: str, part_type: str,
                 body: str | None, *, html: bool = False) -> str:
        """Append a part; a contact's comment reopens a closed or snoozed conversation."""
        conversation = self.conversations[conversation_id]
        person = self.people[author]
        stamp = self.now()
        if body is not None and not html:
            body = paragraphs(body)
        part = Part(str(next(self._part_ids)), part_type, body, person, stamp)
        conversation.parts.append(part)
        conversation.updated_at = stamp
        if person.type in CUSTOMER_TYPES and part_type == "comment" and \
                conversation.state != "open":
            conversation.state, conversation.snoozed_until = "open", None
        return part.id

    def set_state(self, conversation_id: str, admin: str, state: str) -> str:
        """An admin closes, snoozes or opens the conversation: an event part says so."""
        conversation = self.conversations[conversation_id]
        part_type = {"closed": "close", "snoozed": "snoozed", "open": "open"}[state]
        part_id = self.add_part(conversation_id, admin, part_type, None)
        conversation.state = state
        conversation.snoozed_until = self.now() + 3600 if state == "snoozed" else None
        return part_id

    def visible(self) -> list[Conversation]:
        """Conversations the search sees, in id order (Intercom documents no order)."""
        return sorted((c for c in self.conversations.values() if not c.deleted),
                      key=lambda c: int(c.id))

    # ----- as the API writes them ----------------------------------------------------------
    def summary(self, conversation: Conversation) -> dict[str, Any]:
        """A conversation as search lists it: without its parts."""
        contact = conversation.author
        return {
            "type": "conversation", "id": conversation.id,
            "created_at": conversation.created_at, "updated_at": conversation.updated_at,
            "waiting_since": None, "snoozed_until": conversation.snoozed_until,
            "source": {
                "type": conversation.source_type, "id": conversation.source_id,
                "delivered_as": "customer_initiated", "subject": conversation.subject,
                "body": conversation.body, "author": contact.author(), "attachments": [],
                "url": None, "redacted": False,
            },
            "contacts": {"type": "contact.list", "contacts": [
                {"type": "contact", "id": contact.id, "external_id": None}]},
            "open": conversation.state != "closed", "state": conversation.state,
            "read": False, "tags": {"type": "tag.list", "tags": []},
            "priority": "not_priority", "title": None,
        }

    def full(self, conversation: Conversation) -> dict[str, Any]:
        """A conversation as a read returns it: the 500 most recent parts included."""
        parts = [_part_json(part) for part in conversation.parts[-MAX_PARTS:]]
        if conversation.corrupt and parts:
            parts[-1] = {**parts[-1], "body": {"html": parts[-1]["body"]}}
            parts[-1].pop("id")
        return {**self.summary(conversation), "conversation_parts": {
            "type": "conversation_part.list", "conversation_parts": parts,
            "total_count": len(conversation.parts),
        }}


def _part_json(part: Part) -> dict[str, Any]:
    return {
        "type": "conversation_part", "id": part.id, "part_type": part.part_type,
        "body": part.body, "created_at": part.created_at, "updated_at": part.created_at,
        "notified_at": part.created_at, "assigned_to": None, "author": part.author.author(),
        "attachments": [], "external_id": None, "redacted": False,
    }
