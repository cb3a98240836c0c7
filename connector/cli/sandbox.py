"""The commands around the product rather than in it: ``adapters`` (what is installed),
``demo`` (everything end to end on a temporary database) and ``sandbox`` (the simulators, to
play with or to run staging checks against)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from connector import __version__
from connector.cli.app import JsonOpt, LevelOpt, command, handled, out, sandbox_app, setup
from connector.core.errors import UsageError


@command(name="adapters")
def adapters_command(
    as_json: JsonOpt = False,
    log_level: LevelOpt = "warning",
) -> None:
    """List installed adapters (built-in and third-party) with version and capabilities."""
    setup(log_level)
    from adapters.registry import installed

    if as_json:
        out.print_json(json.dumps([_adapter_entry(name, entry)
                                   for name, entry in sorted(installed().items())]))
        return
    table = Table(title="installed adapters")
    for column in ("type", "package", "version", "writes", "webhooks", "simulator"):
        table.add_column(column)
    for name, entry in sorted(installed().items()):
        if entry.cls is None:
            table.add_row(name, entry.distribution, entry.version,
                          Text(str(entry.error), style="red"), "", "")
            continue
        caps = entry.cls.capabilities
        writes = "drafts" if caps.drafts else "internal notes"
        if caps.notes_because:
            writes = f"{writes} ({caps.notes_because})"
        table.add_row(name, entry.distribution, entry.version, writes, caps.webhook or "-",
                      "yes" if entry.cls.simulator else "-")
    out.print(table)


def _adapter_entry(name: str, entry) -> dict[str, object]:  # type: ignore[no-untyped-def]
    row: dict[str, object] = {"type": name, "package": entry.distribution,
                              "version": entry.version}
    if entry.cls is None:
        return {**row, "error": str(entry.error)}
    caps = entry.cls.capabilities
    return {**row, "writes": "drafts" if caps.drafts else "internal notes",
            "notes_because": caps.notes_because,
            "webhooks": caps.webhook, "simulator": bool(entry.cls.simulator)}


@command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long the daemon runs.")] = 30.0,
    log_level: LevelOpt = "info",
) -> None:
    """Simulators + daemon on a temporary SQLite, with seeded tickets; then what it did."""
    setup(log_level)
    from connector.testing.demo import run_demo

    raise typer.Exit(run_demo(seconds, out))


@sandbox_app.callback(invoke_without_command=True)
@handled
def sandbox(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(
        help="Uppzy simulator port; helpdesk simulators take the next ones (0: any free).")
    ] = 8800,
    seed: Annotated[int, typer.Option(
        "--seed", min=0, help="Tickets to create on each helpdesk simulator at start.")] = 3,
    empty: Annotated[bool, typer.Option(
        "--empty", help="Start with no tickets (same as --seed 0).")] = False,
    log_level: LevelOpt = "warning",
) -> None:
    """Run the Uppzy and helpdesk simulators in the foreground, seeded with tickets, and print a
    matching config and the commands to add tickets, replies and resolutions."""
    if ctx.invoked_subcommand is not None:
        return
    setup(log_level)
    import signal
    import threading

    from connector.testing.sandbox import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(port, out, stop, seed_count=0 if empty else seed)


@command(sandbox_app, "ticket")
def sandbox_ticket(
    action: Annotated[str, typer.Argument(
        help="new (a customer opens a ticket) | reply (the customer, or with --agent an agent, "
        "writes on --ticket) | resolve (--ticket)", show_default=False)],
    text: Annotated[str | None, typer.Argument(
        help="The message, for new and reply.", show_default=False)] = None,
    helpdesk: Annotated[str | None, typer.Option(
        "--helpdesk", help="zendesk, freshdesk, helpscout, zammad ...", show_default=False)
    ] = None,
    ticket: Annotated[int | None, typer.Option(
        "--ticket", help="The ticket (reply, resolve).", show_default=False)] = None,
    agent: Annotated[bool, typer.Option(
        "--agent", help="reply as an agent, in public, instead of the customer.")] = False,
    subject: Annotated[str | None, typer.Option(
        "--subject", help="new: the subject (default: the start of the message).",
        show_default=False)] = None,
    customer: Annotated[str, typer.Option("--customer", help="new: the customer's name.")
    ] = "Sandbox Customer",
    port: Annotated[int, typer.Option(help="The --port the sandbox was started with.")] = 8800,
    url: Annotated[str | None, typer.Option(
        "--url", help="The helpdesk simulator's address, instead of --helpdesk and --port.",
        show_default=False)] = None,
) -> None:
    """Act on a running sandbox's helpdesk: a new ticket, a reply, or a resolution."""
    from connector.testing.sandbox import helpdesk_url, ticket_action

    def usage(message: str) -> UsageError:
        return UsageError(f"sandbox ticket: {message}")

    if action not in ("new", "reply", "resolve"):
        raise usage("the action is new, reply or resolve")
    if action != "resolve" and not text:
        raise usage(f"{action} needs the message text")
    if action != "new" and ticket is None:
        raise usage(f"{action} needs --ticket N")
    if url is None and helpdesk is None:
        raise usage("say which helpdesk: --helpdesk NAME (or --url)")
    target = url or helpdesk_url(str(helpdesk), port)
    if action == "new":
        answer = ticket_action(target, helpdesk, "tickets", {
            "body": text, "subject": subject, "customer": customer})
    elif action == "reply":
        path = f"tickets/{ticket}/{'agent_reply' if agent else 'customer_reply'}"
        answer = ticket_action(target, helpdesk, path, {"body": text})
    else:
        answer = ticket_action(target, helpdesk, f"tickets/{ticket}/resolve", {})
    done = {"new": "created", "reply": "agent replied on" if agent else "customer wrote on",
            "resolve": "resolved"}[action]
    out.print(f"{answer['helpdesk']}: {done} ticket {answer['ticket_id']}", highlight=False)


@command()
def version(log_level: LevelOpt = "warning") -> None:
    """Print the version."""
    setup(log_level)
    out.print(__version__)
