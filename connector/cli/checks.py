"""``connector check``: prove every setting that can be proven without side effects.

Each check ends ``ok``, ``failed`` (with the setting to fix) or ``skip`` (with why it could not
run); a check that did not run never says ``ok``. Nothing here writes anywhere: the database is
inspected, never created or migrated; Uppzy is asked for reads (the tenant limits, one page of
each site's session list); each helpdesk for its cheapest authenticated read.

``--smoke`` goes further, for a rollout: one real question through each path the daemon uses,
in a throwaway session that is closed at the end.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from adapters.registry import adapter_class
from connector.config import Config, split_listen
from connector.core.errors import (
    AuthenticationFailed,
    DatabaseUnusable,
    NotFound,
    PermissionDenied,
    RemoteError,
    SmokeFailed,
)
from connector.core.http import RetryPolicy, Timeouts
from connector.core.redact import redact
from connector.store.credentials import DatabaseCredentials
from connector.store.probe import inspect_database, open_existing
from connector.uppzy import UppzyClient

Status = Literal["ok", "failed", "skip"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    seconds: float = 0.0
    key: str | None = None  # the setting to fix, when one is known
    refused: bool = False  # credentials or permissions refused (exit code 3)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _timed(name: str, call: Callable[[], str], *, key: str | None = None,
           on_refusal: Callable[[RemoteError], str | None] | None = None) -> CheckResult:
    """Run one check; a remote error becomes ``failed`` naming the key to fix (``on_refusal``
    may name a more precise one for the error at hand)."""
    started = time.monotonic()
    try:
        detail = call()
    except RemoteError as exc:
        status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        refused = isinstance(exc, AuthenticationFailed | PermissionDenied)
        # Refused credentials: the whole message, because it names the key to fix.
        text = exc if refused else exc.detail or exc
        return CheckResult(name, "failed", redact(f"{status}: {text}"),
                           time.monotonic() - started,
                           (on_refusal(exc) if on_refusal else None) or key, refused)
    except SmokeFailed as exc:
        return CheckResult(name, "failed", redact(str(exc)), time.monotonic() - started, key)
    except Exception as exc:  # report, don't crash: this command exists to diagnose
        return CheckResult(name, "failed", redact(f"{type(exc).__name__}: {exc}"),
                           time.monotonic() - started, key)
    return CheckResult(name, "ok", detail, time.monotonic() - started)


def one_shot_client(config: Config) -> UppzyClient:
    """The Uppzy client for commands a person runs and watches: short retries, no long waits."""
    u = config.uppzy
    return UppzyClient(u.base_url, u.api_key.get_secret_value(),
                       timeouts=Timeouts(connect=u.connect_timeout, read=u.read_timeout),
                       retry=RetryPolicy(attempts=2, max_inline_wait=1.0),
                       sync_read_timeout=u.answer_timeout)


def run_checks(config: Config, *, smoke: bool = False) -> list[CheckResult]:
    """Every check, in the order a person fixes things: config, database, Uppzy, helpdesks,
    the ops listener, webhooks; ``smoke`` adds the rollout checklist's chats."""
    results = [CheckResult("config", "ok", f"{len(config.adapters)} adapter(s)"),
               _database(config)]
    client = one_shot_client(config)
    try:
        results += _uppzy(config, client)
        if smoke:
            sites = _sites(config)
            for site in sites:
                results += _smoke(config, client, site, label=f" ({site})" if len(sites) > 1
                                  else "")
    finally:
        client.close()
    db = _credential_database(config)
    try:
        for index, settings in enumerate(config.adapters):
            adapter = adapter_class(settings.type)(settings)
            if db is not None:
                # The daemon's own store: a check that rotates a refresh token keeps the new one.
                adapter.bind_credentials(DatabaseCredentials(db))
            try:
                results.append(_timed(f"adapter {settings.name}", adapter.check,
                                      key=f"adapters[{index}]", on_refusal=lambda _e, i=index:
                                      f"adapters[{i}].auth"))
                results.append(_webhook(index, settings.name, adapter))
            finally:
                adapter.close()
    finally:
        if db is not None:
            db.dispose()
    results.append(_ops_listener(config))
    return results


def _credential_database(config: Config):  # type: ignore[no-untyped-def]
    """The daemon's database, when it exists (check never creates one). Without it, an adapter
    that must rotate a refresh token refuses to (it would lose the new token) and says so."""
    try:
        return open_existing(config.database.url)
    except DatabaseUnusable:
        return None


def _sites(config: Config) -> list[str]:
    return sorted({config.site_for(a) for a in config.adapters} or {config.uppzy.site_id})


def _database(config: Config) -> CheckResult:
    started = time.monotonic()
    try:
        state = inspect_database(config.database.url)
    except DatabaseUnusable as exc:
        return CheckResult("database", "failed", str(exc), time.monotonic() - started,
                           "database.url")
    seconds = time.monotonic() - started
    if not state.writable:
        return CheckResult("database", "failed", "not writable by this user", seconds,
                           "database.url")
    if not state.exists:
        detail = "no database yet; the first run creates it (the folder is writable)"
    elif state.current:
        detail = f"reachable, writable, schema at revision {state.head}"
    else:
        detail = (f"reachable, writable, schema at revision {state.revision or 'none'}; the "
                  f"daemon migrates it to {state.head} at start (or: connector db upgrade)")
    return CheckResult("database", "ok", detail, seconds)


def _uppzy(config: Config, client: UppzyClient) -> list[CheckResult]:
    """The key, the plan and every site in use, by reads only."""
    u = config.uppzy
    results = []
    if u.tenant_id:
        tenant = u.tenant_id
        results.append(_timed("uppzy tenant limits", lambda: f"tenant {tenant} reachable"
                              if client.tenant_limits(tenant) is not None else "reachable",
                              key="uppzy.tenant_id", on_refusal=_uppzy_key))
    else:
        results.append(CheckResult("uppzy tenant limits", "skip", "no uppzy.tenant_id set"))
    for site in _sites(config):
        def listed(site: str = site) -> str:
            return f"key and site accepted ({client.probe_site(site)} session(s) listed)"

        results.append(_timed(f"uppzy site {site}", listed, key="uppzy.base_url",
                              on_refusal=_site_key(config, site)))
    return results


def _site_key(config: Config, site: str) -> Callable[[RemoteError], str | None]:
    """A 404 on a call that names only the site: the site, or the API root, is wrong."""
    def key(exc: RemoteError) -> str | None:
        if isinstance(exc, NotFound):
            return " or ".join([*config.site_keys(site), "uppzy.base_url (must end in /api/v1)"])
        return _uppzy_key(exc)
    return key


def _uppzy_key(exc: RemoteError) -> str | None:
    if isinstance(exc, AuthenticationFailed):
        return "uppzy.api_key"
    if isinstance(exc, PermissionDenied):
        return "uppzy.api_key (an owner key on a plan with M2M access)"
    return None


def _webhook(index: int, name: str, adapter) -> CheckResult:  # type: ignore[no-untyped-def]
    scheme = adapter.capabilities.webhook
    label = f"webhooks {name}"
    if scheme is None:
        return CheckResult(label, "skip", "this helpdesk signs no webhooks; polling only")
    if adapter.settings.webhook_secret is None:
        return CheckResult(label, "skip", f"no adapters[{index}].webhook_secret: push "
                           "webhooks are off, polling only")
    return CheckResult(label, "ok", f"POST /webhooks/{name} verifies {scheme} signatures")


def _ops_listener(config: Config) -> CheckResult:
    if not config.ops.enabled:
        return CheckResult("ops listener", "skip", "ops.enabled is false")
    host, port = split_listen(config.ops.listen)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        return CheckResult("ops listener", "failed", f"cannot listen on {config.ops.listen}: "
                           f"{exc.strerror or exc} (is the daemon already running?)",
                           key="ops.listen")
    return CheckResult("ops listener", "ok", f"{config.ops.listen} is free")


# ----- the smoke check --------------------------------------------------------------------------
SMOKE_QUESTION = "Connector smoke test: please answer with one short sentence."


def _smoke(config: Config, client: UppzyClient, site: str, *, label: str) -> list[CheckResult]:
    """One throwaway session through everything the daemon does at Uppzy: a sync chat, an async
    chat polled to completion, feedback on that answer, and the close."""
    u = config.uppzy
    session = f"connector-smoke-{secrets.token_hex(6)}"
    rated: list[str] = []  # the async request id, once its answer is there

    def sync_chat() -> str:
        answer = client.chat(site, session, SMOKE_QUESTION, response_language=u.response_language)
        return (f"answered in session {session} ({len(answer.answer)} chars, confidence "
                f"{answer.confidence_level or 'n/a'})")

    def async_chat() -> str:
        request_id = client.submit(site, session, SMOKE_QUESTION,
                                   response_language=u.response_language)
        deadline = time.monotonic() + u.answer_timeout
        polls = 0
        while True:
            polls += 1
            status = client.status(site, request_id)
            if status.done:
                rated.append(request_id)
                return f"completed after {polls} poll(s), request {request_id}"
            if status.failed:
                raise SmokeFailed(f"request {request_id} failed: {status.error}")
            if time.monotonic() + u.poll_interval > deadline:
                raise SmokeFailed(f"request {request_id} still {status.status!r} after "
                                  f"answer_timeout ({u.answer_timeout:g}s)")
            time.sleep(u.poll_interval)

    def feedback() -> str:
        if not rated:
            raise SmokeFailed("skipped: no completed async answer to rate")
        first = client.feedback(site, session, rated[0], "good")
        return "recorded" if first else "accepted (the answer already had a rating)"

    def close() -> str:
        client.close_session(site, session)
        return f"closed {session}"

    return [_timed(f"uppzy {step}{label}", call, on_refusal=_site_key(config, site))
            for step, call in (
        ("sync chat", sync_chat), ("async chat", async_chat), ("feedback", feedback),
        ("close session", close))]
