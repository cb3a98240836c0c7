"""Operations wiring: metrics, the ops HTTP endpoint and notifications, started with one call.

The daemon calls ``start_ops(engine, config)`` after ``engine.start()`` and ``ops.stop()`` after
``engine.shutdown()``, so the last steps' events are still counted and notified. Readiness is
read from the database, not from memory: with several instances on one PostgreSQL, the poll of
an adapter may happen on another instance, and it still counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from connector.config import Config
from connector.core.errors import ConfigError
from connector.daemon.metrics import Metrics
from connector.daemon.notify import Notifier
from connector.daemon.ops_server import OpsResponse, OpsServer
from connector.store.db import DatabaseError
from connector.store.models import utcnow
from connector.store.status import adapter_states, adapters_troubles

if TYPE_CHECKING:
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

READY_INTERVALS = 3
"""An adapter is ready while its last successful poll is at most this many intervals old."""


@dataclass
class Ops:
    metrics: Metrics
    server: OpsServer | None
    notifier: Notifier | None

    def check_stale(self, now: datetime | None = None) -> None:
        """The periodic stale-cursor check (a scheduler job; a no-op without notifications)."""
        if self.notifier is not None:
            self.notifier.check_stale(now)

    def stop(self, flush: float = 2.0) -> None:
        """Stop serving, then give queued notifications up to ``flush`` seconds to go out."""
        if self.server is not None:
            self.server.stop()
        if self.notifier is not None:
            self.notifier.stop(flush)


def start_ops(engine: Runtime, config: Config | None = None, *, serve: bool = True) -> Ops:
    """Subscribe metrics (and notifications, if configured) and start the ops endpoint.

    ``serve=False`` (``run --once``) keeps notifications but opens no port: a one-shot run has
    nothing to be scraped or probed, and must not collide with a daemon's ``ops.listen``.
    Raises ``ConfigError`` naming ``ops.listen`` when the address cannot be bound.
    """
    config = config or engine.config
    metrics = Metrics(engine)
    engine.subscribe(metrics.on_event)
    notifier = None
    if config.notifications:
        notifier = Notifier(config.notifications, engine, on_outcome=metrics.notification)
        engine.subscribe(notifier.on_event)
        notifier.start()
    server = None
    if serve and config.ops.enabled:
        server = ops_server(engine, metrics, config.ops.listen)
        try:
            server.start()
        except OSError as exc:
            if notifier is not None:
                notifier.stop(flush=0)
            raise ConfigError(
                f"ops.listen: cannot listen on {config.ops.listen}: {exc.strerror or exc}"
            ) from None
    return Ops(metrics, server, notifier)


def ops_server(engine: Runtime, metrics: Metrics, listen: str) -> OpsServer:
    """The server with the three built-in routes; ``Ops.server.route`` adds more (webhooks)."""
    server = OpsServer(listen)
    server.route("GET", "/metrics", lambda _request: OpsResponse(
        200, metrics.render(), content_type=CONTENT_TYPE_LATEST))
    server.route("GET", "/healthz", lambda _request: OpsResponse(200, "ok\n"))
    server.route("GET", "/readyz", lambda _request: _readyz(engine))
    return server


def _readyz(engine: Runtime) -> OpsResponse:
    ready, report = readiness(engine)
    return OpsResponse(200 if ready else 503, report)


def readiness(engine: Runtime, now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    """Ready: the database answers, Uppzy answers (its last calls did not all fail), and every
    adapter polled successfully within ``READY_INTERVALS`` of its poll interval (a paused
    adapter is not ready). Work that waits on errors is listed per adapter, so a probe's body
    says what an operator would otherwise find only in ``status``."""
    now = now or utcnow()
    try:
        states = adapter_states(engine.db)
    except DatabaseError as exc:
        log.warning("readiness: database read failed: %s", type(exc).__name__)
        return False, {"ready": False, "database": f"unreachable ({type(exc).__name__})",
                       "adapters": {}}
    try:
        trouble = adapters_troubles(engine.db, engine.adapters, now)
    except DatabaseError:
        trouble = {}
    adapters = {}
    for name, adapter in engine.adapters.items():
        state = states.get(name)
        last_ok = state.last_poll_ok_at if state else None
        age = None if last_ok is None else (now - last_ok).total_seconds()
        limit = READY_INTERVALS * adapter.settings.poll_interval
        adapters[name] = {
            "ready": age is not None and age <= limit,
            "last_poll_ok_seconds_ago": None if age is None else round(age, 1),
            "limit_seconds": round(limit, 3),
            **trouble.get(name, {}),
        }
    since = engine.uppzy_failing_since
    uppzy = {"ready": not engine.uppzy_down, "failures_in_a_row": engine.uppzy_failures,
             "failing_since": since.isoformat() if since and engine.uppzy_down else None}
    ready = uppzy["ready"] and all(a["ready"] for a in adapters.values())
    return ready, {"ready": ready, "database": "ok", "uppzy": uppzy, "adapters": adapters}
