"""Every error the connector raises on purpose, under one base that carries its exit code.

Callers branch on the class, never on the server's text: vendors change their wording, but the
class decides whether a retry can help (see ``retryable``) and whether the daemon must stop.
What each error means for a work item is decided in one table, ``connector.engine.outcomes``;
what it means for a command (its exit code and the first word of its message) is decided here,
so the CLI has one handler for all of them.

Exit codes: 0 ok; 1 anything else; 2 usage, invalid config or an unusable database (the message
names the key); 3 credentials or permissions refused; 130 a backfill stopped by Ctrl-C.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class ConnectorError(Exception):
    """Base of everything the connector raises on purpose."""

    exit_code: ClassVar[int] = EXIT_ERROR
    label: ClassVar[str] = ""  # what the CLI prints before the message, e.g. "config error"

    def headline(self) -> str:
        """The one line a command prints for this error."""
        return f"{self.label}: {self}" if self.label else str(self)


class ConfigError(ConnectorError):
    """Invalid configuration; the message names the key path."""

    exit_code = EXIT_USAGE
    label = "config error"


class DatabaseUnusable(ConnectorError):
    """``database.url`` cannot be used; the message says why, in one line, without secrets."""

    exit_code = EXIT_USAGE
    label = "database.url"

    def headline(self) -> str:
        text = str(self).strip()
        return f"{self.label}: {text.splitlines()[0] if text else text}"


class DatabaseUnreachable(DatabaseUnusable):
    """The database server did not answer (refused, reset, timed out, still starting): nothing
    says the setting is wrong, so the daemon waits for it instead of exiting; a one-shot
    command still stops here."""


class SchemaBehind(DatabaseUnusable):
    """The database is older than this version: a read-only command never migrates it."""

    exit_code = EXIT_ERROR


class InstanceConflict(ConnectorError):
    """Another instance already runs on this SQLite file."""

    exit_code = EXIT_USAGE
    label = "refusing to start"


class UsageError(ConnectorError):
    """A request a command cannot serve as asked (an unknown adapter, a bad window)."""

    exit_code = EXIT_USAGE


class BackfillError(UsageError):
    """A request backfill cannot serve (unknown adapter, no listing, bad window)."""

    label = "backfill"


class SessionsError(UsageError):
    """A request ``connector sessions`` cannot serve (an unknown adapter)."""


class PortBusy(UsageError):
    """A simulator's port is taken (an earlier sandbox still running, another service)."""


class SandboxError(ConnectorError):
    """What ``connector sandbox ticket`` could not do, said so a user can act on it."""

    label = "sandbox ticket"


class UppzyAccessError(ConnectorError):
    """Uppzy refused our key or plan: nothing will work until a human fixes the config."""

    exit_code = EXIT_AUTH
    kind = "authentication failed"

    def headline(self) -> str:
        return f"{self.kind}: {self}"


class UppzySiteUnknown(UppzyAccessError):
    """Uppzy does not know the site (or the base URL is not its API): a wrong setting, never a
    per-question failure, so no fallback note goes on any ticket; the daemon stops instead."""

    kind = "configuration error"


class HelpdeskRefused(ConnectorError):
    """The helpdesk rejected our credentials: nothing more can be read."""

    exit_code = EXIT_AUTH
    label = "authentication failed"


class SmokeFailed(ConnectorError):
    """A smoke step got an answer, but not the one a working setup gives."""


class InvalidTransition(ConnectorError, RuntimeError):
    """A write would move a row along an edge the state machine does not have: a bug."""


class WebhookPayloadError(ConnectorError, ValueError):
    """A webhook body is signed correctly but does not say which ticket changed (answered 400)."""


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

    exit_code = EXIT_AUTH


class PermissionDenied(RemoteError):
    """403: valid identity, but the plan or role does not allow the call."""

    exit_code = EXIT_AUTH


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
    ``timed_out``: the server took the whole read timeout (it may still be working on it).
    """

    retryable = True

    def __init__(
        self, message: str, *, sent: bool, endpoint: str = "", timed_out: bool = False
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.sent = sent
        self.timed_out = timed_out


class MalformedResponse(RemoteError):
    """A 2xx whose body is not what the API documents (an HTML page from a proxy, a cut-off
    JSON document). Transient: the same call usually answers properly a moment later, so the
    item waits and tries again; it is never a reason to give an item up."""

    retryable = True


def maybe_received(exc: RemoteError) -> bool:
    """Whether the server may have acted on a call that failed this way: it answered 2xx with
    a body we could not read, or the connection broke after the request went out. A status
    answer (429, 5xx, 4xx) or a connection never opened means it did not."""
    if isinstance(exc, TransportError):
        return exc.sent
    return isinstance(exc, MalformedResponse) or exc.status is None


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
