"""The Front simulator's records and their JSON, shaped like Front's Core API answers.

Kept apart from the server (``adapters/front/simulator.py``) so each stays readable: this module
knows what a teammate, channel, conversation, message, comment and event look like in Front's
OpenAPI specification (schemas ``TeammateResponse``, ``ChannelResponse``, ``ConversationResponse``,
``MessageResponse``, ``CommentResponse``, ``EventResponse``), the server knows the routes.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from adapters.text import html_to_text, text_to_html

EVENT_TYPES = frozenset({
    "assign", "unassign", "archive", "reopen", "trash", "restore", "reminder", "comment",
    "mention", "inbound", "outbound", "out_reply", "move", "forward", "tag", "untag",
    "sending_error", "message_bounce_error", "conversations_merged", "link_added",
    "link_removed", "custom_field_updated", "macro_triggered", "topic_identified",
    "ticket_status_update",
})
_DIGITS = string.digits + string.ascii_lowercase


def base36(number: int) -> str:
    """Front's ids end in a base-36 number (``cnv_55c8c149``)."""
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _DIGITS[digit] + text
        if not number:
            return text


@dataclass
class SimTeammate:
    id: str
    email: str
    first_name: str
    last_name: str
    type: str = "user"  # "user", or a bot type: "rule", "macro", "ai", ...
    is_blocked: bool = False

    def json(self, base: str) -> dict[str, Any]:
        return {
            "_links": {"self": f"{base}/teammates/{self.id}"},
            "id": self.id, "email": self.email, "username": self.email.split("@")[0],
            "first_name": self.first_name, "last_name": self.last_name, "is_admin": False,
            "is_available": True, "is_blocked": self.is_blocked, "type": self.type,
            "custom_fields": {},
        }


@dataclass
class SimChannel:
    id: str
    name: str
    address: str
    type: str = "smtp"

    def json(self, base: str) -> dict[str, Any]:
        return {"_links": {"self": f"{base}/channels/{self.id}"}, "id": self.id,
                "name": self.name, "address": self.address, "type": self.type,
                "send_as": self.address, "settings": {"undo_send_time": 0},
                "is_private": False, "is_valid": True}


@dataclass
class SimEntry:
    """A message (sent, received or a draft) or a comment of one conversation."""

    id: str
    kind: str  # "message" or "comment"
    created_at: float
    body: str  # HTML for messages, plain text for comments
    author: SimTeammate | None = None
    is_inbound: bool = False
    type: str = "email"
    text: str | None = None
    draft_mode: str | None = None
    handle: str | None = None  # the customer's address, on inbound messages
    corrupt: bool = False

    @classmethod
    def written(cls, entry_id: str, kind: str, at: float, body: str, *, html: bool,
                **fields: Any) -> SimEntry:
        """A message from what someone typed: a text body gets its HTML form and keeps the
        text, an HTML body gets the text version Front makes of e-mail."""
        if kind == "comment":
            return cls(entry_id, kind, at, body, **fields)
        if html:
            return cls(entry_id, kind, at, body, text=html_to_text(body), **fields)
        return cls(entry_id, kind, at, text_to_html(body), text=body, **fields)

    def json(self, base: str, conversation: SimConversation) -> dict[str, Any]:
        author = self.author.json(base) if self.author else None
        if self.kind == "comment":
            data: dict[str, Any] = {
                "_links": {"self": f"{base}/comments/{self.id}"}, "id": self.id,
                "author": author, "body": self.body, "posted_at": self.created_at,
                "attachments": [], "is_pinned": False,
            }
        else:
            data = self._message_json(base, conversation, author)
        if self.corrupt:
            data.pop("id")
        return data

    def _message_json(self, base: str, conversation: SimConversation,
                      author: dict[str, Any] | None) -> dict[str, Any]:
        role = "from" if self.is_inbound else "to"
        data: dict[str, Any] = {
            "_links": {"self": f"{base}/messages/{self.id}",
                       "related": {"conversation": f"{base}/conversations/{conversation.id}"}},
            "id": self.id, "message_uid": self.id[4:], "type": self.type,
            "is_inbound": self.is_inbound, "draft_mode": self.draft_mode, "error_type": None,
            "version": f"v-{self.id}", "created_at": self.created_at,
            "subject": conversation.subject, "blurb": (self.text or "")[:80], "author": author,
            "recipients": [{"name": conversation.customer_name, "handle": conversation.handle,
                            "role": role}],
            "body": self.body, "attachments": [], "metadata": {},
        }
        if self.text is not None and self.type == "email":
            data["text"] = self.text
        return data


@dataclass
class SimConversation:
    id: str
    subject: str
    handle: str
    customer_name: str
    created_at: float
    updated_at: float
    status: str = "unassigned"
    status_id: str | None = None
    status_category: str | None = None
    entries: list[SimEntry] = field(default_factory=list)
    merged_into: str | None = None
    restricted: bool = False

    @property
    def resolved(self) -> bool:
        return self.status in ("archived", "deleted") or self.status_category == "resolved"

    def json(self, base: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "_links": {"self": f"{base}/conversations/{self.id}"},
            "id": self.id, "type": "conversation", "subject": self.subject,
            "status": self.status, "ticket_ids": [], "assignee": None,
            "recipient": {"name": self.customer_name, "handle": self.handle, "role": "from"},
            "tags": [], "links": [], "custom_fields": {}, "is_private": False,
            "scheduled_reminders": [], "metadata": {}, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status_category is not None:
            data["status_id"], data["status_category"] = self.status_id, self.status_category
        return data

    def listed(self, kind: str, drafts: bool) -> list[SimEntry]:
        """One of the conversation's lists, newest first as Front lists them."""
        found = [e for e in self.entries
                 if e.kind == kind and (e.draft_mode is not None) == drafts]
        return sorted(found, key=lambda e: e.created_at, reverse=True)


@dataclass
class SimEvent:
    id: str
    type: str
    emitted_at: float
    conversation_id: str
    source: str  # "inboxes", "teammate", "rule", "api"
    target: SimEntry | None = None

    def json(self, base: str, conversation: SimConversation,
             source: SimTeammate | None) -> dict[str, Any]:
        target = None
        if self.target is not None:
            target = {"_meta": {"type": self.target.kind},
                      "data": self.target.json(base, conversation)}
        return {
            "_links": {"self": f"{base}/events/{self.id}"}, "id": self.id, "type": self.type,
            "emitted_at": self.emitted_at,
            "source": {"_meta": {"type": "teammate" if source else self.source},
                       "data": source.json(base) if source else []},
            "target": target, "conversation": conversation.json(base),
        }
