"""The JSON shapes Help Scout serves people, conversations and threads in."""

from __future__ import annotations

from typing import Any

from adapters.helpscout.simulator.records import _Conversation, _Person, _Thread
from adapters.text import html_to_text


class HelpScoutJson:
    """Records as the API serves them; one place, so every endpoint answers the same shape."""

    def _person_json(self, person: _Person, *, v3: bool = True) -> dict[str, Any]:
        kind = person.kind if v3 or person.kind != "system_user" else "user"
        return {"id": person.id, "type": kind, "first": person.first, "last": person.last,
                "email": person.email}

    def _user_json(self, user: _Person) -> dict[str, Any]:
        return {
            "id": user.id, "firstName": user.first, "lastName": user.last, "email": user.email,
            "role": user.role, "timezone": "UTC", "type": "user",
            "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z",
            "_links": {"self": {"href": f"{self.url}/v2/users/{user.id}"}},
        }

    def _conversation_json(self, c: _Conversation) -> dict[str, Any]:
        customer = self.people[c.customer_id]
        published = [t for t in c.threads if t.state == "published" and t.type != "lineitem"]
        latest = published[-1] if published else None
        return {
            "id": c.id, "number": c.number, "threads": len(published), "type": c.type,
            "folderId": c.mailbox_id * 10, "status": c.status,
            "state": "deleted" if c.deleted else "published",
            "subject": c.subject,
            "preview": html_to_text(latest.body or "")[:100] if latest else "",
            "mailboxId": c.mailbox_id,
            "createdBy": self._person_json(c.created_by),
            "createdAt": c.created_at,
            "closedBy": c.closed_by, "closedAt": c.closed_at,
            "userUpdatedAt": c.user_updated_at or c.waiting_since,
            "customerWaitingSince": {"time": c.waiting_since, "friendly": "just now"},
            "source": {"type": c.source_type, "via": "customer"},
            "tags": [{"id": self._tag_id(t), "color": "#929499", "tag": t} for t in c.tags],
            "cc": [], "bcc": [],
            "primaryCustomer": self._person_json(customer),
            "customFields": [],
            "_embedded": {"threads": []},
            "_links": {
                "self": {"href": f"{self.url}/v2/conversations/{c.id}"},
                "mailbox": {"href": f"{self.url}/v2/mailboxes/{c.mailbox_id}"},
                "primaryCustomer": {"href": f"{self.url}/v2/customers/{c.customer_id}"},
                "threads": {"href": f"{self.url}/v2/conversations/{c.id}/threads"},
                "web": {"href": f"https://secure.helpscout.net/conversation/{c.id}/{c.number}/"},
            },
        }

    def _thread_json(self, t: _Thread, *, v3: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": t.id, "type": t.type, "status": t.status, "state": t.state,
            "action": t.action or {"type": "default", "associatedEntities": {}},
            "source": {"type": t.source_type,
                       "via": "customer" if t.author.kind == "customer" else "user"},
            "customer": self._person_json(self.people[t.customer_id]),
            "createdBy": self._person_json(t.author, v3=v3),
            "to": [], "cc": [], "bcc": [],
            "createdAt": t.created_at,
            "_embedded": {"attachments": []},
            "_links": {},
        }
        if t.body is not None:
            data["body"] = t.body
        return data
