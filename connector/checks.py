"""``connector check``: prove the config can reach every remote system before traffic starts."""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.registry import adapter_class
from connector.config import Config
from connector.errors import RemoteError
from connector.http import RetryPolicy, Timeouts
from connector.redact import redact
from connector.uppzy import UppzyClient

CheckResult = tuple[str, bool, str, float]


def _timed(name: str, call: Callable[[], str]) -> CheckResult:
    started = time.monotonic()
    try:
        detail = call()
    except RemoteError as exc:
        status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        return name, False, redact(f"{status}: {exc.detail or exc}"), time.monotonic() - started
    except Exception as exc:  # report, don't crash: this command exists to diagnose
        return name, False, redact(f"{type(exc).__name__}: {exc}"), time.monotonic() - started
    return name, True, detail, time.monotonic() - started


def run_checks(config: Config) -> list[CheckResult]:
    results: list[CheckResult] = [("config", True, f"{len(config.adapters)} adapter(s)", 0.0)]
    u = config.uppzy
    client = UppzyClient(u.base_url, u.api_key.get_secret_value(),
                         timeouts=Timeouts(connect=u.connect_timeout, read=u.read_timeout),
                         retry=RetryPolicy(attempts=2, max_inline_wait=1.0))
    try:
        if u.tenant_id:
            tenant = u.tenant_id
            results.append(_timed("uppzy tenant limits",
                                  lambda: f"tenant {tenant} reachable" if client.tenant_limits(
                                      tenant) is not None else "reachable"))
        else:
            results.append(("uppzy tenant limits", True, "skipped (no uppzy.tenant_id)", 0.0))
    finally:
        client.close()
    for settings in config.adapters:
        adapter = adapter_class(settings.type)(settings)
        try:
            results.append(_timed(f"adapter {settings.name}", adapter.check))
        finally:
            adapter.close()
    return results
