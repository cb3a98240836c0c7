"""Typed errors shared by every layer that talks to a remote system.

Callers branch on the class, never on the server's text: vendors change their wording, but the
class decides whether a retry can help (see ``retryable``) and whether the daemon must stop.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of everything the connector raises on purpose."""


class ConfigError(ConnectorError):
    """Invalid configuration; the message names the key path."""


class RemoteError(ConnectorError):
    """A remote call failed.

    ``detail`` holds the server's own error text (already stripped of secrets) so operators can
    see why; it is never copied into anything posted on a ticket.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.endpoint = endpoint
        self.retry_after = retry_after

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}: {self.detail}" if self.detail else base


class BadRequest(RemoteError):
    """4xx other than the ones below: the request itself is wrong; repeating it cannot help."""


class AuthenticationFailed(RemoteError):
    """401: the key or token is missing, wrong, expired or revoked."""


class PermissionDenied(RemoteError):
    """403: valid identity, but the plan or role does not allow the call."""


class NotFound(RemoteError):
    """404 (or 410): the object is gone, or never belonged to this account."""


class Moved(RemoteError):
    """301/308 on an object: merged or moved elsewhere; the old id is finished."""


class Conflict(RemoteError):
    """409: the resource is in a state that refuses the call (e.g. feedback too early)."""


class RateLimited(RemoteError):
    """429: retry later, not sooner than ``retry_after`` seconds when the server said so."""

    retryable = True


class ServerError(RemoteError):
    """5xx: a temporary failure on the other side."""

    retryable = True


class TransportError(RemoteError):
    """No HTTP answer at all (refused, reset, timed out).

    ``sent`` is False only when the request provably never reached the server (the connection
    could not be opened), which is the one case where a non-idempotent call may be repeated.
    """

    retryable = True

    def __init__(self, message: str, *, sent: bool, endpoint: str = "") -> None:
        super().__init__(message, endpoint=endpoint)
        self.sent = sent


class MalformedResponse(RemoteError):
    """A 2xx whose body is not what the API documents; fails the one item, not the daemon."""


def error_for_status(status: int) -> type[RemoteError]:
    """Map an HTTP status to the error class that says what to do about it."""
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return PermissionDenied
    if status in (404, 410):
        return NotFound
    if status in (301, 308):
        return Moved
    if status == 409:
        return Conflict
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    return BadRequest
