"""Constants and config builders shared by test modules (importable, unlike conftest)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, overload

from adapters.simulation import Call, Simulator
from adapters.zendesk.simulator import ZendeskSimulator
from connector.testing.uppzy_sim import UppzySimulator

T = TypeVar("T")

API_KEY = "uppzy-test-key-5f1c9e"
ZD_TOKEN = "zd-api-token-77aa31"


def in_ci() -> bool:
    """Whether CI=true: a test that could only skip here must fail instead."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (``scripts/`` is not a package), once per process."""
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             every: float = 0.1) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds.

    The one wait of the suite: a bound on background work, never a speed assertion (the
    machines are shared), so timeouts are generous and the failure says what never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def config_dict(
    tmp_path: Path, uppzy_sim: UppzySimulator, zendesk_sim: ZendeskSimulator, **overrides: Any
) -> dict[str, Any]:
    """A config for the simulators; ``overrides`` replace whole sections or adapter keys."""
    adapter = {
        "name": "zd", "type": "zendesk", "url": zendesk_sim.url,
        "auth": {"email": "bot@example.com", "api_token": ZD_TOKEN},
        "poll_interval": "0.5s", "start_from": "10m",
        **overrides.pop("adapter", {}),
    }
    data: dict[str, Any] = {
        "uppzy": {"base_url": uppzy_sim.base_url, "api_key": API_KEY, "site_id": "site-1",
                  "poll_interval": "0.5s", "answer_timeout": "20s",
                  **overrides.pop("uppzy", {})},
        "database": {"url": f"sqlite:///{tmp_path / 'connector.db'}"},
        "adapters": [adapter],
        "engine": {"tick": "0.1s", **overrides.pop("engine", {})},
        "ops": {"listen": "127.0.0.1:0", **overrides.pop("ops", {})},
    }
    data.update(overrides)
    return data


class SeenCalls(Sequence[T]):
    """What a simulator received from now on, for the calls ``keep`` picks, as ``view`` shows
    each: read live, so a test takes it before the calls and asserts after them. Seen at the
    server, so it is what the client really sent."""

    def __init__(self, sim: Simulator, keep: Callable[[Call], bool],
                 view: Callable[[Call], T]) -> None:
        self._sim, self._keep, self._view = sim, keep, view
        with sim.lock:
            self._start = len(sim.calls)

    def _items(self) -> list[T]:
        with self._sim.lock:
            calls = self._sim.calls[self._start:]
        return [self._view(c) for c in calls if self._keep(c)]

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())


def claim_reads(engine: Any, limit: int) -> list[Any]:
    """Claim due conversation reads as a dispatch does (its steps left to the caller)."""
    from connector.store import claims

    tickets, _ = claims.claim_work(
        engine.writer, engine.instance_id, engine.lease_ttl, adapters=list(engine.adapters),
        tickets=limit, turns=[], posting_grace=engine.posting_grace)
    return tickets
