"""How helpdesks sign their push webhooks, and the payload helpers adapters share.

A webhook only says "this ticket changed, re-read it"; polling stays the source of truth. So the
whole job here is deciding whether a request really comes from the helpdesk (each vendor signs
differently) and pulling ticket ids out of a payload without trusting anything else in it.

Schemes are keyed by the name an adapter declares in ``Capabilities.webhook``. Every comparison
goes through ``hmac.compare_digest``, so a forger learns nothing from how long a refusal takes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from connector.core.errors import WebhookPayloadError

MAX_CLOCK_SKEW = 300.0
"""A Zendesk signature timestamp further than this (seconds) from our clock is refused: a
captured delivery cannot be replayed later, and honest retries carry a fresh timestamp."""

DEFAULT_SECRET_HEADER = "X-Connector-Webhook-Secret"
"""Where a Freshdesk automation rule puts the shared secret, unless configured otherwise."""

_TICKET_ID = re.compile(r"^[0-9]{1,20}$")


class WebhookScheme(Protocol):
    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        """True only if ``headers`` prove the helpdesk sent ``body``; header names lower-cased."""
        ...


def _hmac(secret: bytes, message: bytes, digest: Callable[..., Any]) -> bytes:
    return hmac.new(secret, message, digest).digest()


def _same(expected: str, given: str | None) -> bool:
    """Constant-time equality of two ASCII tokens; a missing or non-ASCII one never matches."""
    if not given or not given.isascii():
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode())


@dataclass(frozen=True)
class ZendeskSignature:
    """``base64(HMAC-SHA256(secret, timestamp + body))``, and a timestamp that must be recent.

    Zendesk signs the timestamp header together with the body (no separator), which is what
    makes refusing an old timestamp a real replay defence.
    """

    max_skew: float = MAX_CLOCK_SKEW
    clock: Callable[[], float] = time.time

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        stamp = headers.get("x-zendesk-webhook-signature-timestamp")
        if not stamp or not stamp.isascii() or not self._fresh(stamp):
            return False
        expected = base64.b64encode(_hmac(secret, stamp.encode() + body, hashlib.sha256))
        return _same(expected.decode(), headers.get("x-zendesk-webhook-signature"))

    def _fresh(self, stamp: str) -> bool:
        try:
            sent = datetime.fromisoformat(stamp.strip())
        except ValueError:
            return False
        if sent.tzinfo is None:
            return False
        return abs(self.clock() - sent.timestamp()) <= self.max_skew


@dataclass(frozen=True)
class FrontAppSignature:
    """Front application webhooks: ``X-Front-Signature: base64(HMAC-SHA256(signing key,
    "{X-Front-Request-Timestamp}:{body}"))``, the timestamp in milliseconds.

    Front signs the timestamp with the body, so refusing an old one is a real replay defence
    (Front recommends five minutes).
    """

    max_skew: float = MAX_CLOCK_SKEW
    clock: Callable[[], float] = time.time

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        stamp = (headers.get("x-front-request-timestamp") or "").strip()
        if not stamp.isascii() or not stamp.isdigit():
            return False
        if abs(self.clock() - int(stamp) / 1000) > self.max_skew:
            return False
        expected = base64.b64encode(_hmac(secret, stamp.encode() + b":" + body, hashlib.sha256))
        return _same(expected.decode(), headers.get("x-front-signature"))


@dataclass(frozen=True)
class HelpScoutSignature:
    """``X-HelpScout-Signature: base64(HMAC-SHA1(secret, body))``."""

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        expected = base64.b64encode(_hmac(secret, body, hashlib.sha1)).decode()
        return _same(expected, headers.get("x-helpscout-signature"))


@dataclass(frozen=True)
class HubSignatureSha1:
    """``X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>`` (Zammad's "signature token",
    Intercom's app client secret)."""

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        expected = "sha1=" + _hmac(secret, body, hashlib.sha1).hex()
        given = headers.get("x-hub-signature")
        return _same(expected, given.lower() if given else None)


@dataclass(frozen=True)
class HubSignatureSha256:
    """``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (Jira's admin webhooks)."""

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        expected = "sha256=" + _hmac(secret, body, hashlib.sha256).hex()
        given = headers.get("x-hub-signature")
        return _same(expected, given.lower() if given else None)


@dataclass(frozen=True)
class SharedSecretHeader:
    """The secret itself in a custom header, for helpdesks that cannot sign (Freshdesk).

    Weaker than a signature (it proves knowledge of the secret, not integrity of the body), which
    is acceptable because the body only names a ticket to re-read; the listener must be HTTPS.
    """

    header: str = DEFAULT_SECRET_HEADER

    def verify(self, secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get(self.header.lower())
        if not given or not given.isascii():
            return False
        return hmac.compare_digest(secret, given.strip().encode())


SCHEMES: dict[str, Callable[[], WebhookScheme]] = {
    "zendesk-hmac-sha256": ZendeskSignature,
    "helpscout-hmac-sha1": HelpScoutSignature,
    "front-hmac-sha256": FrontAppSignature,
    "zammad-hmac-sha1": HubSignatureSha1,
    "hub-hmac-sha256": HubSignatureSha256,
    "intercom-hmac-sha1": HubSignatureSha1,
    "shared-secret-header": SharedSecretHeader,
}


def scheme_for(name: str | None) -> WebhookScheme | None:
    """The verifier for a ``Capabilities.webhook`` name; None when there is none (no route)."""
    factory = SCHEMES.get(name) if name else None
    return factory() if factory is not None else None


# ----- payload helpers -----------------------------------------------------------------------
def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``WebhookPayloadError``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookPayloadError("body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookPayloadError("body is not a JSON object")
    return data


def ticket_id(value: Any, where: str) -> str:
    """A numeric id as the adapters store it (``"123"``), from a JSON number or digit string.

    Anything else is refused rather than passed on: the id ends up in an API path.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and _TICKET_ID.match(value.strip()):
        return value.strip()
    raise WebhookPayloadError(f"{where} is not a ticket id")


# ----- delivering, for simulators and tests --------------------------------------------------
def post_webhook(url: str, body: bytes, headers: Mapping[str, str], timeout: float = 10.0) -> int:
    """POST ``body`` as a helpdesk would and return the status code (errors included).

    Simulators use this to play the helpdesk's side; each builds its own vendor headers.
    """
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", **headers,
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
