"""The JSON shapes Zendesk serves users, tickets and comments in."""

from __future__ import annotations

from typing import Any

from adapters.zendesk.simulator.records import NS, _Comment, _Ticket, _User


class ZendeskJson:
    """Records as the API serves them; one place, so every endpoint answers the same shape."""

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "id": user.id, "url": f"{self.url}/api/v2/users/{user.id}.json", "name": user.name,
            "email": user.email, "role": user.role, "active": True,
            "created_at": user.created_at,
        }

    def _ticket_json(self, ticket: _Ticket) -> dict[str, Any]:
        first = ticket.comments[0] if ticket.comments else None
        return {
            "id": ticket.id,
            "url": f"{self.url}/api/v2/tickets/{ticket.id}.json",
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": first.text if first else "",
            "status": ticket.status,
            "custom_status_id": ticket.custom_status_id,
            "type": None,
            "priority": None,
            "requester_id": ticket.requester_id,
            "submitter_id": ticket.requester_id,
            "assignee_id": None,
            "group_id": ticket.group_id,
            "brand_id": ticket.brand_id,
            "organization_id": None,
            "tags": list(ticket.tags),
            "via": ticket.via,
            "is_public": any(c.public for c in ticket.comments),
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
            "generated_timestamp": ticket.stamp // NS,
        }

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        bodies: dict[str, Any] = {"html_body": comment.markup}
        if not comment.html_only:
            bodies.update(body=comment.text, plain_body=comment.text)
        return {
            "id": comment.id, "type": "Comment", "author_id": comment.author_id, **bodies,
            "public": comment.public, "attachments": [], "audit_id": comment.audit_id,
            "via": comment.via, "created_at": comment.created_at,
            "metadata": {"system": {}, "custom": {}},
        }
