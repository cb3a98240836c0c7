"""Who a request acts as and what it may see: tokens, roles and group access."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from adapters.simulation import SimRequest, SimResponse
from adapters.zammad.simulator.records import ROLES, _error, _expand, _iso, _Ticket, _User


class ZammadAuth:
    """Users and their credentials, the endpoints about users, and the checks every ticket route
    starts with."""

    def add_user(self, name: str, role: str, email: str | None = None) -> int:
        """A user with Zammad's role of that name ("customer", "agent" or "admin")."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        first, _, last = name.partition(" ")
        roles = {"customer": ["Customer"], "agent": ["Agent"], "admin": ["Admin", "Agent"]}[role]
        with self.lock:
            user_id = next(self._ids)
            login = (email or f"user{user_id}").lower()
            self.users[user_id] = _User(
                user_id, login, first, last, email or "", roles, _iso(self._stamp())
            )
        return user_id

    def add_api_token(self, user_id: int, token: str, *,
                      expires_at: datetime | None = None) -> None:
        """A personal access token; it stops working at ``expires_at`` when one is set."""
        with self.lock:
            self._require_user(user_id)
            self._api_tokens[token] = (user_id, expires_at)

    def add_access_token(self, user_id: int, token: str) -> None:
        """An OAuth2 access token, accepted for ``access_token_lifetime`` seconds from now."""
        with self.lock:
            self._require_user(user_id)
            self._access_tokens[token] = (user_id, time.monotonic() + self.access_token_lifetime)

    def revoke_group(self, user_id: int, group_id: int) -> None:
        """Take ``user_id``'s access to a group: its tickets answer 403 and leave search."""
        with self.lock:
            self._require_user(user_id).denied_groups.add(group_id)

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, self._user_json(user, expand=_expand(request)))

    def handle_user_show(self, request: SimRequest, user_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            shown = self.users.get(user_id)
            if shown is None:
                return _error(404, f"Couldn't find User with 'id'={user_id}")
            return SimResponse(200, self._user_json(shown, expand=_expand(request)))

    def _user(self, request: SimRequest) -> _User | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "token":
            user_id = self._personal_token_user(credentials.removeprefix("token=").strip('"'))
        elif scheme.lower() == "bearer":
            user_id = self._personal_token_user(credentials)
            oauth = self._access_tokens.get(credentials)
            if user_id is None and oauth is not None and time.monotonic() < oauth[1]:
                user_id = oauth[0]
        else:
            return None
        return self.users.get(user_id) if user_id is not None else None

    def _personal_token_user(self, token: str) -> int | None:
        user_id, expires_at = self._api_tokens.get(token, (None, None))
        if expires_at is not None and datetime.now(UTC) >= expires_at:
            return None
        return user_id

    def _guard(self, request: SimRequest, *, agent: bool = False) -> _User | SimResponse:
        """The authenticated user, or the 429/403/401 answer that ends the request."""
        refused = self._admit()
        if refused is not None:
            return refused
        if not request.headers.get("authorization"):
            return _error(403, "Authentication required")
        user = self._user(request)
        if user is None:
            response = _error(401, "Can't find User for Token")
            response.headers["X-Failure"] = "Can't find User for Token"
            return response
        if agent and user.roles == ["Customer"]:
            return _error(403, "Not authorized")
        return user

    def _readable_ticket(self, request: SimRequest, ticket_id: int) -> _Ticket | SimResponse:
        user = self._guard(request)
        return user if isinstance(user, SimResponse) else self._ticket_for(user, ticket_id)

    def _writable_ticket(self, request: SimRequest, ticket_id: int) -> _Ticket | SimResponse:
        """Shared drafts need ticket update access: agents only."""
        user = self._guard(request, agent=True)
        return user if isinstance(user, SimResponse) else self._ticket_for(user, ticket_id)

    def _ticket_for(self, user: _User, ticket_id: int) -> _Ticket | SimResponse:
        """The ticket if ``user`` may see it, else the 404 or 403 Zammad answers."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return _error(404, f"Couldn't find Ticket with 'id'={ticket_id}")
        if not self._may_access(user, ticket):
            return _error(403, "Not authorized")
        return ticket

    @staticmethod
    def _may_access(user: _User, ticket: _Ticket) -> bool:
        """Agents see their groups' tickets, customers their own."""
        if user.roles == ["Customer"]:
            return ticket.customer_id == user.id
        return ticket.group_id not in user.denied_groups
