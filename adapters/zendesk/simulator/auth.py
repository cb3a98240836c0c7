"""Who a request acts as: API tokens, OAuth grants and their expiry, as Zendesk documents them."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from typing import Any

from adapters.simulation import SimRequest, SimResponse
from adapters.zendesk.simulator.records import (
    ROLES,
    _AccessToken,
    _iso,
    _oauth_error,
    _OAuthClient,
    _unauthenticated,
    _User,
)


class ZendeskAuth:
    """Users and their credentials, and the endpoints that tell a client who it is or hand it a
    token."""

    def add_user(self, name: str, role: str, email: str | None = None) -> int:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.lock:
            user_id = next(self._ids)
            self.users[user_id] = _User(user_id, name, email, role, _iso(self._stamp()))
        return user_id

    def delete_user(self, user_id: int) -> None:
        """Permanently delete a user: their comments stay, but they are no longer side-loaded."""
        with self.lock:
            del self.users[user_id]

    def add_api_token(self, user_id: int, token: str) -> None:
        with self.lock:
            email = self.users[user_id].email
            if not email:
                raise ValueError("an API token needs a user with an e-mail")
            self._api_tokens[(email, token)] = user_id

    def add_access_token(self, user_id: int, token: str) -> None:
        """A token that never expires, as clients created before 2026-04-30 hand out."""
        with self.lock:
            if user_id not in self.users:
                raise KeyError(f"no user {user_id}")
            self._access_tokens[token] = _AccessToken(user_id, math.inf)

    def add_oauth_client(self, identifier: str, secret: str, user_id: int) -> None:
        """A confidential OAuth client; its client-credentials tokens act as ``user_id``."""
        with self.lock:
            self.oauth_clients[identifier] = _OAuthClient(identifier, secret, user_id)

    def revoke_client(self, identifier: str) -> None:
        """Deactivate the client: its tokens stop working and every grant is refused."""
        with self.lock:
            self.oauth_clients[identifier].revoked = True
            for token in [t for t, a in self._access_tokens.items() if a.client == identifier]:
                del self._access_tokens[token]

    def authorize(self, user_id: int, client: str | None = None) -> str:
        """The refresh token an authorization-code flow would leave the user's app with."""
        with self.lock:
            token = f"zd-refresh-{secrets.token_hex(8)}"
            self._refresh_tokens[token] = (client or self.bot_client_id, user_id)
            return token

    def expire_access_tokens(self) -> None:
        """Every issued access token expires now (as after a long pause of the connector)."""
        with self.lock:
            for token in self._access_tokens.values():
                if token.client is not None:
                    token.expires_at = 0.0

    def handle_users_me(self, request: SimRequest) -> SimResponse:
        with self.lock:
            refused = self._admit()
            if refused is not None:
                return refused
            if "authorization" not in request.headers:
                return SimResponse(200, {"user": {
                    "id": None, "url": None, "name": "Anonymous user", "email": None,
                    "role": "end-user", "active": True, "created_at": None,
                }})
            user = self._user(request)
            if user is None:
                return _unauthenticated()
            return SimResponse(200, {"user": self._user_json(user)})

    def handle_oauth_tokens(self, request: SimRequest) -> SimResponse:
        """Create Token for Grant Type: JSON only; a refresh rotates both tokens."""
        with self.lock:
            if "json" not in request.headers.get("content-type", ""):
                return _oauth_error(400, "invalid_request", "The request must be JSON")
            payload = request.json()
            if not isinstance(payload, dict):
                return _oauth_error(400, "invalid_request", "The request must be a JSON object")
            client = self.oauth_clients.get(str(payload.get("client_id")))
            if client is None or client.revoked or payload.get("client_secret") != client.secret:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            grant = payload.get("grant_type")
            if grant == "client_credentials":
                return SimResponse(200, self._issue(client, client.user_id, payload, False))
            if grant == "refresh_token":
                presented = str(payload.get("refresh_token"))
                self.refresh_tokens_used.append(presented)
                owner = self._refresh_tokens.pop(presented, None)
                if owner is None or owner[0] != client.identifier:
                    return _oauth_error(400, "invalid_grant", "The refresh token is invalid")
                for token in [t for t, a in self._access_tokens.items()
                              if a.refresh == presented]:
                    del self._access_tokens[token]  # the previous access token dies with it
                return SimResponse(200, self._issue(client, owner[1], payload, True))
            return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r}")

    def _issue(
        self, client: _OAuthClient, user_id: int, payload: dict[str, Any], refresh: bool
    ) -> dict[str, Any]:
        """A new access token (and, for the refresh grant, the refresh token that replaces the
        one presented), as the grant-type endpoint answers."""
        token = f"zd-access-{secrets.token_hex(12)}"
        renewed = f"zd-refresh-{secrets.token_hex(8)}" if refresh else None
        self._access_tokens[token] = _AccessToken(
            user_id, time.monotonic() + self.token_ttl, client.identifier, renewed)
        self.issued_tokens.append(token)
        body: dict[str, Any] = {
            "access_token": token, "token_type": "bearer",
            "scope": str(payload.get("scope") or "read write"),
            "expires_in": int(self.token_ttl) if float(self.token_ttl).is_integer()
            else self.token_ttl,
        }
        if renewed is not None:
            self._refresh_tokens[renewed] = (client.identifier, user_id)
            body.update(refresh_token=renewed, refresh_token_expires_in=30 * 86400)
        return body

    def _user(self, request: SimRequest) -> _User | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        user_id: int | None = None
        if scheme.lower() == "bearer":
            access = self._access_tokens.get(credentials.strip())
            alive = access is not None and access.expires_at > time.monotonic()
            user_id = access.user_id if access is not None and alive else None
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            login, _, secret = decoded.partition(":")
            if login.endswith("/token"):  # password logins are off, as on new accounts
                user_id = self._api_tokens.get((login.removesuffix("/token"), secret))
        return self.users.get(user_id) if user_id is not None else None

    def _guard(self, request: SimRequest) -> _User | SimResponse:
        """The authenticated user, or the 429/401 answer that ends the request."""
        refused = self._admit()
        if refused is not None:
            return refused
        return self._user(request) or _unauthenticated()
