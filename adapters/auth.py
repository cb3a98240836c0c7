"""How adapters authenticate: the ``auth`` sections of their settings, the fixed ``Authorization``
headers most helpdesks take, and OAuth access tokens fetched on first use, renewed before they
expire, once more when the helpdesk answers 401, and (for the refresh-token grant) rotated
refresh tokens kept where every instance and every restart finds them.

Every helper here registers each form of a secret it handles (the raw value, the encoded Basic
pair, each token it receives) with the redactor before the value can reach a log line.

The adapter layer knows nothing of the store, so it asks for a ``CredentialStore``: two methods
the engine implements on its database and hands to every adapter (``Adapter.bind_credentials``).
One lock per adapter makes renewals one at a time across threads; across instances the store's
compare-and-set decides which rotation wins, and the loser continues from the winner's token.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag

from connector.core.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    PermissionDenied,
)
from connector.core.http import HttpClient
from connector.core.redact import register_secret

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0  # renew this long before expiry (at most half the token's life)


def basic_authorization(user: str | SecretStr, password: str | SecretStr) -> str:
    """``Basic`` with the encoded pair. The parts given as ``SecretStr`` are the secret ones
    (an API key may be the user name, an e-mail address never is), and the encoded pair always
    is: a log line showing it would show the secret, one base64 decode away."""
    plain = [part.get_secret_value() if isinstance(part, SecretStr) else part
             for part in (user, password)]
    encoded = base64.b64encode(":".join(plain).encode()).decode()
    for part, value in zip((user, password), plain, strict=True):
        if isinstance(part, SecretStr):
            register_secret(value)
    register_secret(encoded)
    return f"Basic {encoded}"


def token_authorization(form: str, token: SecretStr) -> str:
    """A token in the vendor's header form (``"Bearer {}"``, ``"Token token={}"``)."""
    value = token.get_secret_value()
    register_secret(value)
    return form.format(value)


class Credentials(BaseModel):
    """Base of every ``auth`` section: an unknown key is a typo, never a setting to ignore."""

    model_config = ConfigDict(extra="forbid")


class StaticCredentials(Credentials):
    """Credentials that make one fixed ``Authorization`` header; the base adapter sends it."""

    def authorization(self) -> str:
        """The header value; every form of the secret in it is registered with the redactor
        (see ``adapters.auth``)."""
        raise NotImplementedError


class TokenAuth(StaticCredentials):
    """A fixed API token, sent in the vendor's header ``form`` (a subclass sets it)."""

    form: ClassVar[str] = "Token {}"
    token: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return token_authorization(self.form, self.token)


class PasswordAuth(StaticCredentials):
    """A user's name and password over HTTP Basic."""

    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return basic_authorization(self.username, self.password)


class BearerTokenAuth(StaticCredentials):
    """An OAuth (or personal) access token sent as ``Authorization: Bearer …``."""

    access_token: SecretStr = Field(min_length=1)

    def authorization(self) -> str:
        return token_authorization("Bearer {}", self.access_token)


def union_by_key(key: str, when_present: type[BaseModel], otherwise: type[BaseModel]) -> Any:
    """A settings union chosen by whether ``key`` is given (e.g. ``auth: {token: ...}``).

    Choosing up front makes a config error name one variant's fields instead of listing every
    variant's; the tags are the class names, which the config loader leaves out of key paths.
    """
    return union_by_keys([(key, when_present)], otherwise)


def union_by_keys(choices: list[tuple[str, type[BaseModel]]], otherwise: type[BaseModel]) -> Any:
    """Like ``union_by_key`` with several variants: the first whose key is given wins."""
    models = [model for _, model in choices] + [otherwise]

    def pick(value: Any) -> str:
        for key, model in choices:
            if (key in value) if isinstance(value, dict) else isinstance(value, model):
                return model.__name__
        return otherwise.__name__

    members = [Annotated[model, Tag(model.__name__)] for model in models]
    return Annotated[Union[tuple(members)], Discriminator(pick)]  # noqa: UP007


class CredentialStore(Protocol):
    """Secrets that must outlive the process: read one, or replace it if it is still
    ``expected`` (None: nothing stored yet). ``replace`` returns False when another writer got
    there first."""

    def read(self, name: str) -> str | None: ...

    def replace(self, name: str, new: str, expected: str | None) -> bool: ...


class MemoryCredentials:
    """A ``CredentialStore`` that lives as long as the process: for tests and tools that own
    the only copy of the adapter's credentials."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def read(self, name: str) -> str | None:
        with self._lock:
            return self._values.get(name)

    def replace(self, name: str, new: str, expected: str | None) -> bool:
        with self._lock:
            if self._values.get(name) != expected:
                return False
            self._values[name] = new
            return True


@dataclass(frozen=True)
class OAuthGrant:
    """What a vendor's token endpoint needs: the client, and for the refresh-token grant the
    refresh token the authorization-code flow handed out (the start of the rotation chain)."""

    path: str
    client_id: str
    client_secret: str
    scope: str | None = None
    refresh_token: str | None = None
    as_json: bool = True  # the body's encoding; OAuth's standard is a form
    default_lifetime: float = math.inf  # seconds, when the answer names no ``expires_in``


class OAuthTokens:
    """The access token one adapter sends, and everything needed to keep it valid."""

    def __init__(
        self,
        grant: OAuthGrant,
        http: HttpClient,
        *,
        vendor: str,
        key_path: str,
        store: CredentialStore | None,
    ) -> None:
        self.grant = grant
        self.http = http
        self._vendor = vendor
        self._key_path = key_path
        self._store = store
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        for secret in (grant.client_secret, grant.refresh_token):
            register_secret(secret or "")
        # One chain per configured refresh token: a new authorization in the config starts anew
        # instead of being shadowed by what an older one rotated into.
        origin = f"{grant.client_id}\0{grant.refresh_token or ''}".encode()
        self.store_key = f"oauth_refresh:{http.name}:{hashlib.sha256(origin).hexdigest()[:16]}"

    def bind(self, store: CredentialStore) -> None:
        self._store = store

    def header(self) -> dict[str, str]:
        """``Authorization`` for the next request; renews first when the token is due."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def renew(self, rejected: Mapping[str, str]) -> bool:
        """After a 401: a new token, unless another thread already replaced the refused one."""
        with self._lock:
            if self._token is None or rejected.get("Authorization") == f"Bearer {self._token}":
                self._fetch()
        return True

    def close(self) -> None:
        self.http.close()

    # ----- the grant -------------------------------------------------------------------------
    def _fetch(self) -> None:
        if self.grant.refresh_token is None:
            self._accept(self._post({"grant_type": "client_credentials"}))
            return
        stored = self._stored()
        current = stored or self.grant.refresh_token
        try:
            body = self._post({"grant_type": "refresh_token", "refresh_token": current})
        except AuthenticationFailed:
            # Another instance may have rotated the token we sent: continue from its result.
            latest = self._stored()
            if latest is None or latest == current:
                raise
            stored, current = latest, latest
            body = self._post({"grant_type": "refresh_token", "refresh_token": current})
        self._accept(body)
        self._keep_rotated(body, stored)

    def _post(self, fields: dict[str, str]) -> dict[str, Any]:
        form = {**fields, "client_id": self.grant.client_id,
                "client_secret": self.grant.client_secret}
        if self.grant.scope:
            form["scope"] = self.grant.scope
        try:
            resp = self.http.request(
                "POST", self.grant.path, endpoint="oauth_token", idempotent=True,
                json_body=form if self.grant.as_json else None,
                data=None if self.grant.as_json else form,
            )
        except (BadRequest, AuthenticationFailed, PermissionDenied) as exc:
            # OAuth servers answer a refused grant with 400 or 401: the same for us.
            raise AuthenticationFailed(
                f"{self.http.name} oauth_token: {self._vendor} refused the OAuth grant "
                f"({fields['grant_type']}); check {self._key_path}",
                status=exc.status, detail=exc.detail, endpoint="oauth_token",
            ) from None
        body = resp.data if isinstance(resp.data, dict) else {}
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise MalformedResponse(f"{self.http.name} oauth_token: no access_token",
                                    status=resp.status, endpoint="oauth_token")
        register_secret(token)
        return body

    def _accept(self, body: dict[str, Any]) -> None:
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = self.grant.default_lifetime
        self._renew_at = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
        self._token = body["access_token"]

    def _keep_rotated(self, body: dict[str, Any], expected: str | None) -> None:
        """Store the refresh token that replaced the one just used (it is now the only valid
        one). Losing the compare-and-set means another instance rotated from another token at
        the same time; its result is stored and valid too, and is what everyone uses next."""
        rotated = body.get("refresh_token")
        if not isinstance(rotated, str) or not rotated:
            return  # not rotated: the one we hold stays valid
        register_secret(rotated)
        if self._store is None:
            raise AuthenticationFailed(
                f"{self.http.name} oauth_token: nowhere to keep the rotated refresh token "
                f"of {self._key_path} (no database bound)", endpoint="oauth_token",
            )
        if not self._store.replace(self.store_key, rotated, expected):
            log.info("%s: another instance rotated the refresh token at the same time; "
                     "continuing with its token", self.http.name)

    def _stored(self) -> str | None:
        if self._store is None:
            raise AuthenticationFailed(
                f"{self.http.name} oauth_token: the refresh-token grant of {self._key_path} "
                "needs the database to keep rotated tokens", endpoint="oauth_token",
            )
        stored = self._store.read(self.store_key)
        if stored:
            register_secret(stored)
        return stored
