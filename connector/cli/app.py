"""The ``connector`` application: shared options, consoles, and the one error handler.

Commands live in the other modules of this package and register themselves with ``command``.
Every error of ours carries its exit code and its first word (``connector.core.errors``), so a
command raises it and the handler here prints one line and exits; no command picks an exit
code from an error's text.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from connector import __version__
from connector.config import Config, load_config
from connector.core.errors import EXIT_OK, EXIT_USAGE, ConnectorError, DatabaseUnusable
from connector.store.db import DatabaseError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Drafts helpdesk replies with the Uppzy M2M chat API.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
sandbox_app = typer.Typer(help="The Uppzy and helpdesk simulators, to play with or test against.")
app.add_typer(sandbox_app, name="sandbox")

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """The one place where an error becomes a line on stderr and an exit code."""
    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConnectorError as exc:
            say_error(exc.headline())
            raise typer.Exit(exc.exit_code) from None
        except DatabaseError as exc:  # the database went away after it was probed
            unusable = DatabaseUnusable(str(getattr(exc, "orig", None) or exc))
            say_error(unusable.headline())
            raise typer.Exit(EXIT_USAGE) from None
    return call  # type: ignore[return-value]


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """``group.command`` behind the shared error handler."""
    def register(func: F) -> F:
        group.command(name)(handled(func))
        return func
    return register


def say_error(line: str) -> None:
    """One plain line on stderr: remote text must never be read as markup."""
    err.print(line, markup=False, highlight=False)


def setup(level: str, fmt: str = "text") -> None:
    from connector.core.logs import LEVELS, setup_logging

    if level.lower() not in LEVELS:
        err.print(f"--log-level: must be one of {', '.join(LEVELS)}")
        raise typer.Exit(EXIT_USAGE)
    if fmt not in ("text", "json"):
        err.print("--log-format: must be text or json")
        raise typer.Exit(EXIT_USAGE)
    setup_logging(level.lower(), fmt)


def load(path: Path | None) -> Config:
    """The config, or exit 2 naming the key path (through the handler)."""
    return load_config(path)


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version,
        is_eager=True)] = False,
) -> None:
    """Drafts helpdesk replies with the Uppzy M2M chat API."""
