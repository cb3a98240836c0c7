"""Whether Uppzy is reachable and accepts us: the engine's view of its one upstream.

Transient failures only make Uppzy "down" after a few in a row, so one hiccup does not flip
``/readyz``; a refused key or plan, or an unknown site, is final and stops the daemon.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from connector.config import Config
from connector.core.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    RemoteError,
    UppzyAccessError,
    UppzySiteUnknown,
)
from connector.store.models import utcnow

# Logged under the runtime's name, where these lines came from, so log filters keep matching.
log = logging.getLogger("connector.engine.runtime")

UPPZY_DOWN_AFTER = 3
"""Consecutive transient Uppzy failures (none succeeding in between) that make it "down":
``/readyz`` says not ready and ``status`` shows the outage until one call succeeds."""


class UppzyHealth:
    """The ``Runtime``'s record of Uppzy's last answers; ``Runtime.__init__`` sets the state
    (``_uppzy_verified``, ``uppzy_failures``, ``uppzy_failing_since``)."""

    config: Config
    _lock: threading.Lock
    _uppzy_verified: bool
    uppzy_failures: int
    uppzy_failing_since: datetime | None
    emit: Callable[..., None]

    def note_uppzy_ok(self) -> None:
        self._uppzy_verified = True
        if self.uppzy_failures:
            with self._lock:
                down, self.uppzy_failures = self.uppzy_down, 0
                self.uppzy_failing_since = None
            if down:
                log.warning("Uppzy answers again")
                self.emit("uppzy_recovered")

    def note_uppzy_failure(self, exc: RemoteError) -> None:
        """A transient Uppzy error (5xx, 429, transport, malformed body): the work waits; after
        ``UPPZY_DOWN_AFTER`` in a row, readiness and ``status`` say Uppzy is down."""
        with self._lock:
            self.uppzy_failures += 1
            if self.uppzy_failing_since is None:
                self.uppzy_failing_since = utcnow()
            newly_down = self.uppzy_failures == UPPZY_DOWN_AFTER
        if newly_down:
            log.error("Uppzy is failing (%s); questions, closes and feedback wait for it",
                      type(exc).__name__)
            self.emit("uppzy_down", error=type(exc).__name__)

    @property
    def uppzy_down(self) -> bool:
        return self.uppzy_failures >= UPPZY_DOWN_AFTER

    def check_uppzy_access(self, exc: RemoteError, *, site: str | None = None) -> None:
        """Raise when Uppzy refused the key or the plan, or (for a call that names only
        ``site``) answered 404: the daemon must stop, naming the setting to fix."""
        if isinstance(exc, AuthenticationFailed):
            raise UppzyAccessError(
                f"Uppzy rejected the API key ({exc.detail or exc.status}); fix uppzy.api_key")
        if isinstance(exc, PermissionDenied):
            raise UppzyAccessError(
                f"Uppzy refused access: the plan or role does not allow M2M "
                f"({exc.detail or exc.status}); an owner key on a plan with M2M is needed"
            )
        if isinstance(exc, NotFound) and site is not None:
            raise UppzySiteUnknown(self.config.site_problem(site, exc.detail or "not found"))
