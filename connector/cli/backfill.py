"""``connector backfill``: draft replies for tickets that waited before the daemon started.

The work is ``connector.engine.backfill``; this module is its options, its progress (a bar on a
terminal, a plain line every few seconds elsewhere) and its exit codes.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from connector.cli.app import ConfigOpt, LevelOpt, command, err, load, out, say_error, setup
from connector.core.errors import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConnectorError,
)

if TYPE_CHECKING:
    from connector.engine.backfill_request import BackfillResult
    from connector.engine.backfill_request import Progress as BackfillProgress


@command()
def backfill(
    adapter: Annotated[str, typer.Option(
        "--adapter", "-a", help="The adapter to backfill, by its name in the config.",
        show_default=False)],
    since: Annotated[str, typer.Option(
        "--since", help="Start of the window: ISO date or datetime (UTC unless it has an offset), "
        "or a time ago such as 7d or 12h.",
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
    setup(log_level)
    cfg = load(config)
    import signal
    import threading

    from connector.engine.backfill import run_backfill
    from connector.engine.backfill_request import make_window

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
    except ConnectorError:
        bar.close("failed")
        raise
    except KeyboardInterrupt:  # the second Ctrl-C
        bar.close("stopped")
        err.print("stopped at once: run the same command again to resume")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # workers may sit in a remote call; their rows resume later
    bar.close("stopped" if result.interrupted else "done")
    raise typer.Exit(_report(adapter, result, dry_run))


def _report(adapter: str, result: BackfillResult, dry_run: bool) -> int:
    """Print what the run did; its exit code."""
    p = result.progress
    if dry_run:
        for ticket in result.would_queue:
            out.print(f"would queue {ticket.external_id:>10}  {ticket.status:<10} "
                      f"{ticket.subject or ''}", markup=False, highlight=False)
    verb = "would queue" if dry_run else "queued"
    resumed = f" (+{p.resumed} queued by an earlier run)" if p.resumed else ""
    out.print(f"{adapter}: found {p.found}, {verb} {p.queued}{resumed}"
              + ("" if dry_run else f", drafted {p.drafted}")
              + f", skipped {p.skipped}, failed {p.failed}", highlight=False)
    for reason, count in result.reasons.most_common():
        out.print(f"  {count:>6}  {reason}", markup=False, highlight=False)
    if result.fatal:
        say_error(f"authentication failed: {result.fatal}")
        return EXIT_AUTH
    if result.interrupted:
        err.print("interrupted: run the same command again to resume", highlight=False)
        return EXIT_INTERRUPTED
    if result.unfinished:
        say_error(f"{result.unfinished}; run the same command again later")
    if result.stalled:
        err.print("some turns are still in flight; the daemon or the next run finishes them")
    failed = result.stalled or result.unfinished or p.failed
    return EXIT_ERROR if failed else EXIT_OK


class _BackfillBar:
    """found / queued / drafted / skipped with an ETA, drawn from the first report on. Without
    a terminal (a log file, CI, cron) a bar draws nothing until the end, so a plain line is
    printed every ``LINE_EVERY`` seconds instead."""

    LINE_EVERY = 5.0

    def __init__(self, console: Console, dry_run: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console, self.dry_run = console, dry_run
        self._next_line = 0.0
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
        if not self.console.is_terminal:
            import time

            if time.monotonic() >= self._next_line:
                self._next_line = time.monotonic() + self.LINE_EVERY
                self.console.print(f"{'listing' if p.listing else 'drafting'}: {counts}",
                                   markup=False, highlight=False)
            return
        done = p.skipped + p.failed + (p.queued if self.dry_run else p.drafted)
        self.progress.update(self.task, total=max(p.found, 1), completed=done, counts=counts,
                             description="listing" if p.listing else "drafting")

    def close(self, outcome: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=outcome)
            self.progress.stop()
