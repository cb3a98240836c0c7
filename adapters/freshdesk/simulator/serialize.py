"""The JSON shapes Freshdesk serves tickets and conversations in."""

from __future__ import annotations

from typing import Any

from adapters.freshdesk.simulator.records import _Conversation, _Ticket


class FreshdeskJson:
    """Records as the API serves them; one place, so every endpoint answers the same shape."""

    def _ticket_json(self, ticket: _Ticket, description: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": ticket.id, "subject": ticket.subject, "status": ticket.status,
            "priority": 1, "source": ticket.source, "type": None,
            "requester_id": ticket.requester_id, "responder_id": None,
            "group_id": ticket.group_id, "company_id": None, "product_id": ticket.product_id,
            "email_config_id": None, "tags": list(ticket.tags), "cc_emails": [],
            "fwd_emails": [], "reply_cc_emails": [], "to_emails": None, "spam": ticket.spam,
            "fr_escalated": False, "is_escalated": False, "custom_fields": {},
            "due_by": ticket.created_at, "fr_due_by": ticket.created_at,
            "created_at": ticket.created_at, "updated_at": ticket.updated_at,
        }
        if ticket.deleted:
            body["deleted"] = True
        if description:
            body.update(description=ticket.html, description_text=ticket.text, attachments=[])
        return body

    def _conversation_json(self, ticket: _Ticket, entry: _Conversation) -> dict[str, Any]:
        author = self.contacts.get(entry.user_id)
        email = author.email if author else None
        return {
            "id": entry.id, "body": entry.html, "body_text": entry.text,
            "incoming": entry.incoming, "private": entry.private, "user_id": entry.user_id,
            "support_email": None if entry.incoming else "support@example.freshdesk.com",
            "source": entry.source, "category": 2, "ticket_id": ticket.id,
            "from_email": email if entry.incoming else None, "to_emails": [],
            "cc_emails": [], "bcc_emails": None, "attachments": [],
            "created_at": entry.created_at, "updated_at": entry.created_at,
        }
