"""``connector run`` and ``connector db upgrade``: the commands that start or migrate."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Annotated

import typer

from connector.cli.app import (
    ConfigOpt,
    FormatOpt,
    LevelOpt,
    command,
    db_app,
    load,
    out,
    say_error,
    setup,
)


@command()
def run(
    config: ConfigOpt = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Poll once, wait for answers, post, close, then exit.")] = False,
    log_level: LevelOpt = "info",
    log_format: FormatOpt = "text",
) -> None:
    """Run the daemon until SIGINT/SIGTERM (or one pass with --once)."""
    setup(log_level, log_format)
    cfg = load(config)
    from connector.daemon.launch import run_once, run_until_stopped

    finished = run_once(cfg) if once else run_until_stopped(cfg)
    if finished.fatal is not None:
        say_error(finished.fatal.headline())
    for name, reason in finished.paused.items():
        say_error(f"adapter {name} paused: {reason}")
    if once:
        raise typer.Exit(finished.exit_code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if not finished.clean or _calls_in_flight():
        # A step or a poll blocked in a remote call (a change feed can take its whole read
        # timeout): waiting for it would outlast the service manager's stop timeout. Nothing
        # is lost: its row resumes after the restart, and a poll's cursor only moves with the
        # page it stored.
        os._exit(finished.exit_code)
    raise typer.Exit(finished.exit_code)


def _calls_in_flight() -> bool:
    """Whether a thread other than this one could keep the process alive at exit."""
    return any(t.is_alive() and not t.daemon and t is not threading.current_thread()
               for t in threading.enumerate())


@command(db_app, "upgrade")
def db_upgrade(config: ConfigOpt = None, log_level: LevelOpt = "info") -> None:
    """Apply database migrations (also done at every `run`)."""
    setup(log_level)
    cfg = load(config)
    from connector.store.db import current_revision, open_migrated
    from connector.store.probe import inspect_database

    inspect_database(cfg.database.url)
    db = open_migrated(cfg.database.url)
    out.print(f"database at revision {current_revision(db)}")
