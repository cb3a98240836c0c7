"""Who a request acts as: users, customers, OAuth apps and the tokens they are granted."""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs

from adapters.helpscout.simulator.records import ROLES, _Person
from adapters.simulation import SimRequest, SimResponse


class HelpScoutAuth:
    """People and apps, the token and ``users/me`` endpoints, and the check every route starts
    with."""

    def add_user(self, first: str, last: str = "", *, email: str | None = None,
                 role: str = "user", system: bool = False) -> int:
        """A Help Scout user; ``system=True`` makes an AI agent (``system_user``)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        return self._add_person(first, last, email, "system_user" if system else "user", role)

    def add_customer(self, first: str, last: str = "", *, email: str | None = None) -> int:
        return self._add_person(first, last, email, "customer", "user")

    def add_app(self, app_id: str, app_secret: str, owner_id: int) -> None:
        """An OAuth app whose client-credentials tokens act as ``owner_id``."""
        with self.lock:
            self._person(owner_id, "user")
            self._apps[app_id] = (app_secret, owner_id)

    def expire_tokens(self) -> None:
        """Revoke every access token, as expiry or an app secret reset would."""
        with self.lock:
            self._tokens.clear()

    def handle_oauth_token(self, request: SimRequest) -> SimResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return SimResponse(400, {"error": "unsupported_grant_type",
                                     "error_description": "Unsupported grant type"})
        with self.lock:
            app = self._apps.get(form.get("client_id", ""))
            if app is None or not secrets.compare_digest(app[0], form.get("client_secret", "")):
                return SimResponse(401, {"error": "invalid_client",
                                         "error_description": "Bad client credentials"})
            token = secrets.token_hex(16)
            self._tokens[token] = (app[1], time.monotonic() + self.token_lifetime)
            self.issued_tokens.append(token)
        return SimResponse(200, {"token_type": "bearer", "access_token": token,
                                 "expires_in": int(self.token_lifetime)})

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, self._user_json(user))

    def _add_person(self, first: str, last: str, email: str | None, kind: str, role: str) -> int:
        with self.lock:
            person_id = next(self._ids)
            self.people[person_id] = _Person(person_id, first, last, email, kind, role)
        return person_id

    def _person(self, person_id: int, *kinds: str) -> _Person:
        person = self.people.get(person_id)
        if person is None or person.kind not in kinds:
            raise KeyError(f"no {' or '.join(kinds)} {person_id}")
        return person

    def _guard(self, request: SimRequest) -> _Person | SimResponse:
        """The token's user, or the 429/401 answer that ends the request."""
        refused = self._admit(request)
        if refused is not None:
            return refused
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        entry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or time.monotonic() >= entry[1]:
            return SimResponse(401, {"error": "invalid_token",
                                     "error_description": "Invalid or expired access token"})
        return self.people[entry[0]]
