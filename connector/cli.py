"""The ``connector`` command: options, exit codes and printing; no HTTP or SQL here.

Exit codes: 0 ok; 1 anything else; 2 usage or invalid config (the message names the key path);
3 authentication or permission failure at start; 130 backfill stopped by Ctrl-C (rerun resumes).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from connector import __version__
from connector.config import Config, load_config
from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.engine.backfill import Progress as BackfillProgress

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
    from connector.logs import tag_instance
    from connector.ops import start_ops
    from connector.store.claims import InstanceConflict
    from connector.webhooks import register_webhooks

    engine = Engine(cfg)
    tag_instance(engine.instance_id)
    ops = None
    try:
        engine.start()
        ops = start_ops(engine, serve=not once)  # --once: notifications only, no port
        register_webhooks(ops, engine)
        engine.check_uppzy()
    except InstanceConflict as exc:
        err.print(f"refusing to start: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except ConfigError as exc:  # e.g. ops.listen cannot be bound
        err.print(f"config error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except UppzyAccessError as exc:
        if ops is not None:
            ops.stop()  # lets the "key refused" alert go out
        err.print(f"authentication failed: {exc}", markup=False)
        raise typer.Exit(EXIT_AUTH) from None
    if once:
        finished = engine.run_once()
        engine.shutdown()
        ops.stop()
        if engine.fatal is not None:
            err.print(f"authentication failed: {engine.fatal}", markup=False)
            raise typer.Exit(EXIT_AUTH)
        if not finished:
            log.warning("answer_timeout passed with work in flight; it continues next run")
        raise typer.Exit(EXIT_OK)
    from connector.scheduler import Daemon

    daemon = Daemon(engine, stale_check=ops.check_stale)
    daemon.install_signal_handlers()
    daemon.run()
    clean = engine.shutdown()
    ops.stop()
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
def check(
    config: ConfigOpt = None,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="Also the rollout checklist: a sync chat, an async chat polled to "
        "completion, feedback on it, and closing that throwaway session.")] = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Validate the config and try each remote system's cheapest authenticated call."""
    _setup(log_level)
    cfg = _load(config)
    from connector.checks import run_checks

    results = run_checks(cfg, smoke=smoke)
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
                   "cancelled", "failed", "sessions open/closed", "polled by", "state"):
        table.add_column(column)
    for a in report["adapters"]:
        t = a["turns"]
        age = a["cursor_age_seconds"]
        table.add_row(
            a["name"], "never" if age is None else format_duration(age), str(a["tickets"]),
            str(t["queued"]), str(t["submitted"] + t["answered"] + t["posting"]),
            str(t["posted"]), str(t["cancelled"]), str(t["failed"]),
            f"{a['sessions']['open']}/{a['sessions']['closed']}", a["polled_by"] or "-",
            f"paused: {a['pause_reason']}" if a["paused"] else "ok",
        )
    out.print(table)
    for a in report["adapters"]:
        shadow = a["shadow"]
        if shadow["enabled"] or shadow["answers"]:
            mean = shadow["mean_similarity"]
            out.print(
                f"  {a['name']} shadow mode: {shadow['answers']} answers kept, "
                f"{shadow['compared_with_agent_reply']} compared with the agent's reply, mean "
                f"similarity {'n/a' if mean is None else f'{mean:.0%}'}", markup=False)
        for f in a["recent_failures"]:
            out.print(f"  {a['name']} ticket {f['ticket']}: {f['reason']}", markup=False)


EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C: a backfill stopped early, rerun resumes


@app.command()
def backfill(
    adapter: Annotated[str, typer.Option(
        "--adapter", "-a", help="The adapter to backfill, by its name in the config.",
        show_default=False)],
    since: Annotated[str, typer.Option(
        "--since", help="Start of the window: ISO date or datetime (UTC unless it has an offset).",
        show_default=False)],
    until: Annotated[str | None, typer.Option(
        "--until", help="End of the window: ISO datetime, or a date for that whole day "
        "[default: now].", show_default=False)] = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the tickets it would queue; change nothing.")] = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Queue at most N tickets in this run.", show_default=False)
    ] = None,
    log_level: LevelOpt = "warning",
) -> None:
    """Draft replies for open tickets whose customer has waited since before the daemon started.

    Ctrl-C stops cleanly (exit 130); running the same command again resumes without duplicates.
    """
    _setup(log_level)
    cfg = _load(config)
    import signal
    import threading

    from connector.engine.backfill import BackfillError, make_window, run_backfill
    from connector.engine.turns import UppzyAccessError
    from connector.store.claims import InstanceConflict

    stop = threading.Event()

    def interrupt(_signum: int, _frame: object) -> None:
        stop.set()  # a second Ctrl-C exits at once; what was in hand resumes on the next run
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    bar = _BackfillBar(err, dry_run)
    try:
        result = run_backfill(cfg, adapter, make_window(since, until), dry_run=dry_run,
                              limit=limit, stop=stop, on_progress=bar.update)
    except (BackfillError, InstanceConflict) as exc:
        bar.close("failed")
        err.print(f"backfill: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except UppzyAccessError as exc:
        bar.close("failed")
        err.print(f"authentication failed: {exc}", markup=False)
        raise typer.Exit(EXIT_AUTH) from None
    except KeyboardInterrupt:  # the second Ctrl-C
        bar.close("stopped")
        err.print("stopped at once: run the same command again to resume")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # workers may sit in a remote call; their rows resume later
    bar.close("stopped" if result.interrupted else "done")
    p = result.progress
    if dry_run:
        for ticket in result.would_queue:
            out.print(f"would queue {ticket.external_id:>10}  {ticket.status:<10} "
                      f"{ticket.subject or ''}", markup=False, highlight=False)
    verb = "would queue" if dry_run else "queued"
    out.print(f"{adapter}: found {p.found}, {verb} {p.queued}"
              + ("" if dry_run else f", drafted {p.drafted}")
              + f", skipped {p.skipped}, failed {p.failed}", highlight=False)
    for reason, count in result.reasons.most_common():
        out.print(f"  {count:>6}  {reason}", markup=False, highlight=False)
    if result.fatal:
        err.print(f"authentication failed: {result.fatal}", markup=False)
        raise typer.Exit(EXIT_AUTH)
    if result.interrupted:
        err.print("interrupted: run the same command again to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.unfinished:
        err.print(f"{result.unfinished}; run the same command again later", markup=False)
    if result.stalled:
        err.print("some turns are still in flight; the daemon or the next run finishes them")
    failed = result.stalled or result.unfinished or p.failed
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


class _BackfillBar:
    """found / queued / drafted / skipped with an ETA, drawn from the first report on."""

    def __init__(self, console: Console, dry_run: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.dry_run = dry_run
        self.progress = Progress(
            TextColumn("{task.description:<8}"), BarColumn(), TextColumn("{task.fields[counts]}"),
            TextColumn("ETA"), TimeRemainingColumn(), console=console,
        )
        self.task: int | None = None

    def update(self, p: BackfillProgress) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("listing", counts="")
        counts = f"found {p.found}  {'would queue' if self.dry_run else 'queued'} {p.queued}"
        if not self.dry_run:
            counts += f"  drafted {p.drafted}"
        counts += f"  skipped {p.skipped}" + (f"  failed {p.failed}" if p.failed else "")
        done = p.skipped + p.failed + (p.queued if self.dry_run else p.drafted)
        self.progress.update(self.task, total=max(p.found, 1), completed=done, counts=counts,
                             description="listing" if p.listing else "drafting")

    def close(self, outcome: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=outcome)
            self.progress.stop()


@app.command()
def sessions(
    config: ConfigOpt = None,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", "-a", help="Only this adapter's sessions.", show_default=False)] = None,
    state: Annotated[str | None, typer.Option(
        "--status", help="open | closed (closing counts as closed)", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Our Uppzy sessions, each with what Uppzy's own session list says about it."""
    _setup(log_level)
    cfg = _load(config)
    from connector.sessions_report import SessionsError, collect

    try:
        report = collect(cfg, adapter=adapter, status=state)
    except SessionsError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for site, info in report["sites"].items():
        if not info["ok"]:
            err.print(f"Uppzy's session list for site {site} is unavailable: {info['error']}",
                      markup=False, highlight=False)
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title="sessions")
    for column in ("session", "adapter", "ticket", "state", "last question", "uppzy status",
                   "uppzy last activity", "uppzy messages"):
        table.add_column(column)
    for s in report["sessions"]:
        u = s["uppzy"] or {}
        table.add_row(
            s["session_id"], s["adapter"], s["ticket_id"] or "-", s["state"],
            _when(s["last_customer_at"]), u.get("status") or (
                "not listed" if s["uppzy"] is None else "?"),
            _when(u.get("last_activity")),
            "-" if u.get("messages") is None else str(u["messages"]),
        )
    out.print(table)


def _when(iso: str | None) -> str:
    """An ISO time to the second, for a table cell; anything else as it came."""
    if not iso:
        return "-"
    return iso[:19].replace("T", " ") if len(iso) >= 19 and iso[10] == "T" else iso


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
