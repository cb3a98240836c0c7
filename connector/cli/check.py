"""``connector check`` and ``connector resume``: prove the settings, lift a pause they proved."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from connector.cli.app import ConfigOpt, JsonOpt, LevelOpt, command, load, out, setup
from connector.config import Config
from connector.core.errors import EXIT_AUTH, EXIT_ERROR, EXIT_OK, UsageError

MARKS = {"ok": "[green]ok[/green]    ", "failed": "[red]failed[/red]",
         "skip": "[yellow]skip[/yellow]  "}


@command()
def check(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="Also the rollout checklist: a sync chat, an async chat polled to "
        "completion, feedback on it, and closing that throwaway session.")] = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Validate the config and try each remote system's cheapest authenticated call."""
    setup(log_level)
    cfg = load(config)
    from connector.cli.checks import run_checks

    results = run_checks(cfg, smoke=smoke)
    _lift_proven_pauses(cfg, [r.name.removeprefix("adapter ") for r in results
                              if r.name.startswith("adapter ") and r.status == "ok"])
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in results]))
    else:
        for r in results:
            # Remote text (a vendor's error, a user name) is escaped: "[/]" would crash rich.
            fix = f"  [bold]-> fix {escape(r.key)}[/bold]" if r.status == "failed" and r.key \
                else ""
            out.print(f"{MARKS[r.status]} {escape(r.name):<28} {r.seconds * 1000:6.0f} ms  "
                      f"{escape(r.detail)}{fix}", highlight=False)
    failed = [r for r in results if r.status == "failed"]
    if any(r.refused for r in failed):
        raise typer.Exit(EXIT_AUTH)
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


def _lift_proven_pauses(cfg: Config, proven: list[str]) -> None:
    """A check that just proved an adapter's credentials ends its pause (when a database
    exists: check never creates one)."""
    from connector.core.errors import DatabaseUnusable
    from connector.store.pauses import resume
    from connector.store.probe import open_existing

    if not proven:
        return
    try:
        db = open_existing(cfg.database.url)
    except DatabaseUnusable:
        return
    try:
        for name in resume(db, proven):
            out.print(f"adapter {name}: credentials work again; its pause is lifted",
                      markup=False, highlight=False)
    finally:
        db.dispose()


@command(name="resume")
def resume_command(
    adapter: Annotated[list[str] | None, typer.Argument(
        help="Adapter names to resume [default: every paused adapter].", show_default=False)
    ] = None,
    config: ConfigOpt = None,
    log_level: LevelOpt = "warning",
) -> None:
    """End an adapter's pause now (after fixing its credentials), instead of waiting for it."""
    setup(log_level)
    cfg = load(config)
    from connector.store.pauses import paused, resume
    from connector.store.probe import open_existing

    unknown = [name for name in adapter or [] if name not in {a.name for a in cfg.adapters}]
    if unknown:
        raise UsageError(f"no adapter named {', '.join(unknown)} in the config")
    db = open_existing(cfg.database.url)
    try:
        before = paused(db)
        for name in resume(db, adapter or None):
            out.print(f"adapter {name} resumed (was: {before[name]})", markup=False,
                      highlight=False)
        if not before:
            out.print("no adapter is paused", highlight=False)
    finally:
        db.dispose()
