"""Wiring the daemon together: the runtime, the ops server, webhooks and the scheduler.

Start-up failures are raised as typed errors (``connector.core.errors``), each with its exit
code; what a finished run leaves (a fatal Uppzy error, adapters all paused, calls still in
flight) comes back as a ``Finished`` for the command to report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from connector.config import Config
from connector.core.errors import EXIT_AUTH, EXIT_OK, DatabaseUnreachable, UppzyAccessError
from connector.core.logs import tag_instance
from connector.daemon.ops import Ops, start_ops
from connector.daemon.scheduler import Daemon
from connector.daemon.webhook_route import register_webhooks
from connector.engine.runtime import Runtime
from connector.store.db import DatabaseError
from connector.store.pauses import paused
from connector.store.probe import diagnose, inspect_database, sqlite_path

log = logging.getLogger("connector")

DATABASE_WAIT_MAX = 30.0
"""Seconds between start-up attempts on a database server that does not answer, at most."""


@dataclass
class Finished:
    """How a run ended: ``fatal`` stopped it (exit 3); ``paused`` adapters (a one-shot run
    in which every adapter is paused exits 3 too); ``clean`` is False when a step or a poll
    was still blocked in a remote call at shutdown."""

    fatal: UppzyAccessError | None = None
    paused: dict[str, str] = field(default_factory=dict)
    clean: bool = True

    @property
    def exit_code(self) -> int:
        return EXIT_AUTH if self.fatal is not None or self.paused else EXIT_OK


def start(config: Config, *, serve: bool) -> tuple[Runtime, Ops]:
    """A started runtime and its ops side; Uppzy's access proven before anything is asked."""
    inspect_database(config.database.url)
    runtime = Runtime(config)
    tag_instance(runtime.instance_id)
    ops = None
    try:
        runtime.start()
        ops = start_ops(runtime, serve=serve)  # --once: notifications only, no port
        register_webhooks(ops, runtime)
        runtime.check_uppzy()
    except UppzyAccessError:
        if ops is not None:
            ops.stop()  # lets the "key refused" alert go out
        raise
    except DatabaseError:  # gone during the start: let go of what was built before a retry
        if ops is not None:
            ops.stop()
        runtime.shutdown(grace=0)
        raise
    return runtime, ops


def run_once(config: Config) -> Finished:
    """One pass: poll, wait for answers, post, close; then stop."""
    runtime, ops = start(config, serve=False)
    finished = runtime.run_once()
    stuck = paused(runtime.db)
    runtime.shutdown()
    ops.stop()
    everything_paused = bool(stuck) and set(stuck) >= set(runtime.adapters)
    if not finished:
        log.warning("answer_timeout passed with work in flight; it continues next run")
    return Finished(fatal=runtime.fatal, paused=stuck if everything_paused else {})


def start_when_the_database_answers(config: Config, *, most: float = DATABASE_WAIT_MAX
                                    ) -> tuple[Runtime, Ops]:
    """``start``, waiting (1 s, doubling, at most ``most``) while the database server does not
    answer, whether it is silent at the first look or goes away during the start (migrations,
    taking claims back). The service unit does not restart exit 2, so exiting here would turn
    one blip at start (a host booting before PostgreSQL, a failover, a restart during a cut)
    into a stopped connector; a URL that cannot work is still raised at once, and SIGTERM
    still stops the wait."""
    delay = 1.0
    while True:
        try:
            return start(config, serve=True)
        except DatabaseUnreachable as exc:
            trouble = exc
        except DatabaseError as exc:
            diagnosed = diagnose(exc, server=sqlite_path(config.database.url) is None)
            if not isinstance(diagnosed, DatabaseUnreachable):
                raise
            trouble = diagnosed
        log.warning("%s; waiting for the database, next try in %.0f s", trouble.headline(), delay)
        time.sleep(delay)
        delay = min(delay * 2, most)


def run_until_stopped(config: Config) -> Finished:
    """The daemon: every job on its schedule until SIGINT/SIGTERM/SIGHUP or a fatal error."""
    runtime, ops = start_when_the_database_answers(config)
    daemon = Daemon(runtime, stale_check=ops.check_stale)
    daemon.install_signal_handlers()
    daemon.run()
    clean = runtime.shutdown()
    ops.stop()
    ended = Finished(fatal=runtime.fatal, clean=clean)
    log.info("stopped (exit %d)", ended.exit_code)
    return ended
