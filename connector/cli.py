"""The ``connector`` command: options, exit codes and printing; no HTTP or SQL here.

Exit codes: 0 ok; 1 anything else; 2 usage or invalid config (the message names the key path);
3 authentication or permission failure at start.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from connector import __version__
from connector.config import Config, load_config
from connector.errors import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Drafts helpdesk replies with the Uppzy M2M chat API.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")

# Piped output (logs, CI, scripts) is not wrapped at 80 columns: rows stay greppable.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
log = logging.getLogger("connector")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML config file [default: $CONNECTOR_CONFIG]",
    show_default=False)]
LevelOpt = Annotated[str, typer.Option(
    "--log-level", help="debug | info | warning | error", case_sensitive=False)]
FormatOpt = Annotated[str, typer.Option("--log-format", help="text | json")]


def _setup(level: str, fmt: str = "text") -> None:
    from connector.logs import LEVELS, setup_logging

    if level.lower() not in LEVELS:
        err.print(f"--log-level: must be one of {', '.join(LEVELS)}")
        raise typer.Exit(EXIT_USAGE)
    if fmt not in ("text", "json"):
        err.print("--log-format: must be text or json")
        raise typer.Exit(EXIT_USAGE)
    setup_logging(level.lower(), fmt)


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"config error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def run(
    config: ConfigOpt = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Poll once, wait for answers, post, close, then exit.")] = False,
    log_level: LevelOpt = "info",
    log_format: FormatOpt = "text",
) -> None:
    """Run the daemon until SIGINT/SIGTERM (or one pass with --once)."""
    _setup(log_level, log_format)
    cfg = _load(config)
    from connector.engine.runtime import Engine
    from connector.engine.turns import UppzyAccessError

    engine = Engine(cfg)
    try:
        engine.start()
        engine.check_uppzy()
    except UppzyAccessError as exc:
        err.print(f"authentication failed: {exc}", markup=False)
        raise typer.Exit(EXIT_AUTH) from None
    if once:
        finished = engine.run_once()
        engine.shutdown()
        if engine.fatal is not None:
            err.print(f"authentication failed: {engine.fatal}", markup=False)
            raise typer.Exit(EXIT_AUTH)
        if not finished:
            log.warning("answer_timeout passed with work in flight; it continues next run")
        raise typer.Exit(EXIT_OK)
    from connector.scheduler import Daemon

    daemon = Daemon(engine)
    daemon.install_signal_handlers()
    daemon.run()
    clean = engine.shutdown()
    code = EXIT_AUTH if engine.fatal is not None else EXIT_OK
    if engine.fatal is not None:
        err.print(f"authentication failed: {engine.fatal}", markup=False)
    log.info("stopped (exit %d)", code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if not clean:
        os._exit(code)  # workers blocked in a remote call; their rows resume after restart
    raise typer.Exit(code)


@app.command()
def check(config: ConfigOpt = None, log_level: LevelOpt = "warning") -> None:
    """Validate the config and try each remote system's cheapest authenticated call."""
    _setup(log_level)
    cfg = _load(config)
    from connector.checks import run_checks

    results = run_checks(cfg)
    for name, ok, detail, seconds in results:
        mark = "[green]ok[/green]    " if ok else "[red]failed[/red]"
        out.print(f"{mark} {name:<28} {seconds * 1000:6.0f} ms  {detail}", highlight=False)
    failed = [r for r in results if not r[1]]
    if any("401" in r[2] or "403" in r[2] for r in failed):
        raise typer.Exit(EXIT_AUTH)
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Per adapter: cursor age, tickets, turns by state, failures, sessions."""
    _setup(log_level)
    cfg = _load(config)
    from connector.engine.status import collect
    from connector.store.db import make_engine, migrate

    db = make_engine(cfg.database.url)
    migrate(db)
    report = collect(cfg, db)
    if as_json:
        out.print_json(json.dumps(report))
        return
    from connector.durations import format_duration

    table = Table(title="connector status")
    for column in ("adapter", "cursor age", "tickets", "queued", "in flight", "posted",
                   "cancelled", "failed", "sessions open/closed", "state"):
        table.add_column(column)
    for a in report["adapters"]:
        t = a["turns"]
        age = a["cursor_age_seconds"]
        table.add_row(
            a["name"], "never" if age is None else format_duration(age), str(a["tickets"]),
            str(t["queued"]), str(t["submitted"] + t["answered"] + t["posting"]),
            str(t["posted"]), str(t["cancelled"]), str(t["failed"]),
            f"{a['sessions']['open']}/{a['sessions']['closed']}",
            f"paused: {a['pause_reason']}" if a["paused"] else "ok",
        )
    out.print(table)
    for a in report["adapters"]:
        for f in a["recent_failures"]:
            out.print(f"  {a['name']} ticket {f['ticket']}: {f['reason']}", markup=False)


@app.command()
def adapters() -> None:
    """List installed adapters (built-in and third-party) with version and capabilities."""
    from adapters.registry import installed

    table = Table(title="installed adapters")
    for column in ("type", "package", "version", "writes", "webhooks", "simulator"):
        table.add_column(column)
    for name, entry in sorted(installed().items()):
        if entry.cls is None:
            table.add_row(name, entry.distribution, entry.version, f"[red]{entry.error}[/red]",
                          "", "")
            continue
        caps = entry.cls.capabilities
        table.add_row(name, entry.distribution, entry.version,
                      "drafts" if caps.drafts else "internal notes", caps.webhook or "-",
                      "yes" if entry.cls.simulator else "-")
    out.print(table)


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long the daemon runs.")] = 30.0,
    log_level: LevelOpt = "info",
) -> None:
    """Simulators + daemon on a temporary SQLite, with seeded tickets; then what it did."""
    _setup(log_level)
    from connector.sandbox.demo import run_demo

    raise typer.Exit(run_demo(seconds, out))


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(
        help="Uppzy simulator port; helpdesk simulators take the next ones (0: any free).")
    ] = 8800,
    log_level: LevelOpt = "warning",
) -> None:
    """Run the Uppzy and helpdesk simulators in the foreground and print a matching config."""
    _setup(log_level)
    import signal
    import threading

    from connector.sandbox.serve import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(port, out, stop)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, log_level: LevelOpt = "info") -> None:
    """Apply database migrations (also done at every `run`)."""
    _setup(log_level)
    cfg = _load(config)
    from connector.store.db import current_revision, make_engine, migrate

    db = make_engine(cfg.database.url)
    migrate(db)
    out.print(f"database at revision {current_revision(db)}")


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main() -> None:
    app()
