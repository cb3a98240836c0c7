"""The JSON shapes Zammad serves users, tickets, articles and states in."""

from __future__ import annotations

from typing import Any

from adapters.zammad.simulator.records import (
    ARTICLE_TYPES,
    SENDERS,
    STATE_TYPES,
    SYSTEM_USER_ID,
    _Article,
    _State,
    _Ticket,
    _User,
)


class ZammadJson:
    """Records as the API serves them, with or without ``expand``; one place, so every endpoint
    answers the same shape."""

    def _user_json(self, user: _User, *, expand: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": user.id, "login": user.login, "firstname": user.firstname,
            "lastname": user.lastname, "email": user.email, "active": True, "vip": False,
            "organization_id": None, "role_ids": [
                {"Admin": 1, "Agent": 2, "Customer": 3}[r] for r in user.roles
            ],
            "created_at": user.created_at, "updated_at": user.created_at,
        }
        if expand:
            body["roles"] = list(user.roles)
        return body

    def _ticket_json(self, ticket: _Ticket, *, expand: bool = False) -> dict[str, Any]:
        state = self.states[ticket.state_id]
        body: dict[str, Any] = {
            "id": ticket.id, "group_id": ticket.group_id, "priority_id": 2,
            "state_id": ticket.state_id, "organization_id": None, "number": ticket.number,
            "title": ticket.title, "owner_id": SYSTEM_USER_ID, "customer_id": ticket.customer_id,
            "note": None, "first_response_at": None, "close_at": None, "pending_time": None,
            "type": None, "time_unit": None, "preferences": {},
            "create_article_type_id": ARTICLE_TYPES[ticket.create_article_type],
            "create_article_sender_id": SENDERS["Customer"],
            "article_count": len(ticket.articles), "last_contact_at": ticket.updated_at,
            "updated_by_id": ticket.updated_by_id, "created_by_id": ticket.created_by_id,
            "created_at": ticket.created_at, "updated_at": ticket.updated_at,
        }
        if expand:
            body.update({
                "group": self.groups[ticket.group_id].name if ticket.group_id in self.groups
                else None,
                "state": state.name, "priority": "2 normal", "owner": "-",
                "customer": self.users[ticket.customer_id].login,
                "created_by": self.users[ticket.created_by_id].login,
                "updated_by": self.users[ticket.updated_by_id].login,
                "create_article_type": ticket.create_article_type,
                "create_article_sender": "Customer",
                "article_ids": [a.id for a in ticket.articles],
            })
        if ticket.corrupt:
            body.pop("state_id")
            body.pop("state", None)
        return body

    def _article_json(self, article: _Article) -> dict[str, Any]:
        author = self.users.get(article.created_by_id)
        login = author.login if author else "-"
        body: dict[str, Any] = {
            "id": article.id, "ticket_id": article.ticket_id,
            "type_id": ARTICLE_TYPES[article.type], "sender_id": SENDERS[article.sender],
            "from": article.from_, "to": "", "cc": "", "subject": article.subject,
            "reply_to": None, "message_id": None, "in_reply_to": None,
            "content_type": article.content_type, "body": article.body,
            "internal": article.internal, "preferences": {}, "attachments": [],
            "origin_by_id": article.origin_by_id, "created_by_id": article.created_by_id,
            "updated_by_id": article.created_by_id, "created_at": article.created_at,
            "updated_at": article.created_at, "type": article.type, "sender": article.sender,
            "created_by": login, "updated_by": login,
        }
        ticket = self.tickets.get(article.ticket_id)
        if ticket is not None and ticket.corrupt:
            body.pop("id")
        return body

    def _state_json(self, state: _State, *, expand: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": state.id, "state_type_id": state.state_type_id, "name": state.name,
            "next_state_id": 4 if state.name == "pending close" else None,
            "ignore_escalation": state.state_type_id >= 3, "default_create": state.id == 1,
            "default_follow_up": state.name == "open", "note": None, "active": state.active,
            "created_at": state.created_at, "updated_at": state.created_at,
        }
        if expand:
            body["state_type"] = STATE_TYPES[state.state_type_id]
        return body
