"""``connector check``: prove the config can reach every remote system before traffic starts.

``--smoke`` goes further, for a rollout: one real question through each path the daemon uses,
in a throwaway session that is closed at the end.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from adapters.registry import adapter_class
from connector.config import Config
from connector.errors import RemoteError
from connector.http import RetryPolicy, Timeouts
from connector.redact import redact
from connector.uppzy import UppzyClient

CheckResult = tuple[str, bool, str, float]


class SmokeFailed(Exception):
    """A smoke step got an answer, but not the one a working setup gives."""


def _timed(name: str, call: Callable[[], str]) -> CheckResult:
    started = time.monotonic()
    try:
        detail = call()
    except RemoteError as exc:
        status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        return name, False, redact(f"{status}: {exc.detail or exc}"), time.monotonic() - started
    except SmokeFailed as exc:
        return name, False, redact(str(exc)), time.monotonic() - started
    except Exception as exc:  # report, don't crash: this command exists to diagnose
        return name, False, redact(f"{type(exc).__name__}: {exc}"), time.monotonic() - started
    return name, True, detail, time.monotonic() - started


def one_shot_client(config: Config) -> UppzyClient:
    """The Uppzy client for commands a person runs and watches: short retries, no long waits."""
    u = config.uppzy
    return UppzyClient(u.base_url, u.api_key.get_secret_value(),
                       timeouts=Timeouts(connect=u.connect_timeout, read=u.read_timeout),
                       retry=RetryPolicy(attempts=2, max_inline_wait=1.0),
                       sync_read_timeout=u.answer_timeout)


def run_checks(config: Config, *, smoke: bool = False) -> list[CheckResult]:
    """Each check's (name, ok, detail, seconds); ``smoke`` adds the rollout checklist's chats."""
    results: list[CheckResult] = [("config", True, f"{len(config.adapters)} adapter(s)", 0.0)]
    u = config.uppzy
    client = one_shot_client(config)
    try:
        if u.tenant_id:
            tenant = u.tenant_id
            results.append(_timed("uppzy tenant limits",
                                  lambda: f"tenant {tenant} reachable" if client.tenant_limits(
                                      tenant) is not None else "reachable"))
        else:
            results.append(("uppzy tenant limits", True, "skipped (no uppzy.tenant_id)", 0.0))
        if smoke:
            sites = sorted({config.site_for(a) for a in config.adapters} or {u.site_id})
            for site in sites:
                results += _smoke(config, client, site, label=f" ({site})" if len(sites) > 1
                                  else "")
    finally:
        client.close()
    for settings in config.adapters:
        adapter = adapter_class(settings.type)(settings)
        try:
            results.append(_timed(f"adapter {settings.name}", adapter.check))
        finally:
            adapter.close()
    return results


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

    return [_timed(f"uppzy {step}{label}", call) for step, call in (
        ("sync chat", sync_chat), ("async chat", async_chat), ("feedback", feedback),
        ("close session", close))]
