"""Who a request acts as: contacts, agents and their API keys."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from adapters.freshdesk.simulator.records import ACCESS_DENIED, _Contact, _unauthenticated
from adapters.simulation import SimRequest, SimResponse


def _agent_json(agent: _Contact) -> dict[str, Any]:
    return {
        "id": agent.id, "available": True, "occasional": False, "ticket_scope": 1,
        "signature": None, "group_ids": [], "role_ids": [], "skill_ids": [],
        "type": "support_agent", "created_at": agent.created_at, "updated_at": agent.created_at,
        "contact": {"name": agent.name, "email": agent.email, "active": True,
                    "language": "en", "time_zone": "UTC"},
    }


class FreshdeskAuth:
    """Contacts and agents, the agent endpoints, and the check every route starts with."""

    def add_contact(self, name: str, email: str | None = None) -> int:
        with self.lock:
            contact_id = next(self._ids)
            self.contacts[contact_id] = _Contact(contact_id, name, email, False, self._now())
        return contact_id

    def add_agent(self, name: str, email: str, *, api_key: str | None = None) -> int:
        with self.lock:
            agent_id = next(self._ids)
            self.contacts[agent_id] = _Contact(agent_id, name, email, True, self._now())
            if api_key:
                self._api_keys[api_key] = agent_id
        return agent_id

    def handle_agents_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "agents_me")
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, _agent_json(user))

    def handle_agent_view(self, request: SimRequest, agent_id: int) -> SimResponse:
        """An agent by its id, which is its user id (the ``user_id`` of its conversations);
        a contact's id, or no user at all, answers 404."""
        with self.lock:
            user = self._guard(request, "agent_view")
            if isinstance(user, SimResponse):
                return user
            if not self.agents_readable:
                return SimResponse(403, dict(ACCESS_DENIED))
            agent = self.contacts.get(agent_id)
            if agent is None or not agent.agent:
                return SimResponse(404)
            return SimResponse(200, _agent_json(agent))

    def _contact(self, user_id: int) -> _Contact:
        contact = self.contacts.get(user_id)
        if contact is None:
            raise KeyError(f"no contact or agent {user_id}")
        return contact

    def _user(self, request: SimRequest) -> _Contact | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        key, _, _password = decoded.partition(":")  # any password: Freshdesk ignores it
        agent_id = self._api_keys.get(key)
        return self.contacts.get(agent_id) if agent_id is not None else None

    def _guard(self, request: SimRequest, endpoint: str) -> _Contact | SimResponse:
        """The authenticated agent, or the 429/401 answer that ends the request."""
        refused = self._admit(endpoint, request)
        if refused is not None:
            return refused
        return self._user(request) or _unauthenticated()
