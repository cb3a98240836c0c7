"""Which job runs how often. APScheduler only triggers work; state lives in the database.

Every job coalesces (a late tick runs once, not N times), never overlaps itself, and has no
misfire grace limit, so a tick delayed by a busy machine still runs instead of being dropped.
Skipped or missed runs are logged so a stalled job is visible.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 5.0


class Daemon:
    """Runs the engine's jobs until ``stop`` (a signal, or a fatal Uppzy access error)."""

    def __init__(self, engine: Runtime, stale_check: Callable[[], Any] | None = None) -> None:
        self.engine = engine
        self._stale_check = stale_check
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(engine.adapters) + 3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        self._stopping = threading.Event()

    def _add(self, func: Callable[[], Any], seconds: float, job_id: str, delay: float = 0) -> None:
        self.scheduler.add_job(
            func, "interval", seconds=seconds, id=job_id, name=job_id,
            next_run_time=datetime.now().astimezone() + timedelta(seconds=delay),
        )

    def run(self) -> None:
        """Block until stopped; returns normally in every case."""
        engine = self.engine
        for name, adapter in engine.adapters.items():
            self._add(lambda n=name: engine.poll(n), adapter.settings.poll_interval, f"poll:{name}")
        self._add(self._dispatch, engine.config.engine.tick, "dispatch")
        self._add(engine.housekeeping, HOUSEKEEPING_INTERVAL, "housekeeping", delay=1)
        self._add(engine.heartbeat, engine.config.engine.lease_ttl / 3, "heartbeat")
        if self._stale_check is not None:
            shortest = min([60.0, *(a.settings.poll_interval for a in engine.adapters.values())])
            self._add(self._stale_check, shortest, "stale-check", delay=5)
        log.info("daemon %s running: %d adapter(s), %s chat, %d workers", engine.instance_id,
                 len(engine.adapters), engine.config.uppzy.mode, engine.config.engine.workers)
        self.scheduler.start()

    def _dispatch(self) -> None:
        self.engine.dispatch()
        if self.engine.fatal is not None:
            self.stop("Uppzy access refused")

    def stop(self, why: str = "stop requested") -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: %s", why)
        # From a thread of its own: a signal handler runs on the main thread, possibly in the
        # middle of the scheduler's own loop, where shutting down under it made the loop look
        # up a job that was gone (exit 1 instead of 0). The thread waits for the loop's lock.
        threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": False},
                         name="scheduler-stop", daemon=True).start()

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP all stop cleanly (exit 0). HUP is not a reload: a closed
        terminal or a reflexive ``kill -HUP`` must not kill a step half-way, and reading the
        config again in a running daemon is not supported (restart it instead)."""
        def handler(signum: int, _frame: object) -> None:
            self.stop(signal.Signals(signum).name)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, handler)

    @staticmethod
    def _on_event(event: Any) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run at %s", event.job_id, event.scheduled_run_time)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.debug("job %s still running; this tick is merged into it", event.job_id)
        elif event.code == EVENT_JOB_ERROR:
            log.error("job %s failed: %s", event.job_id, event.exception)
