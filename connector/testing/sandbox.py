"""``connector sandbox``: seeded simulators in the foreground, with a config that points at them.

A user plays with it: ``connector run`` against the printed config drafts answers to the seeded
tickets, and ``connector sandbox ticket new|reply|resolve`` (or ``curl`` on ``/_sim/tickets``)
adds customer messages, agent replies and resolutions while it runs. Teams also use it for
staging checks: inject faults over HTTP at ``/_sim/faults``, read ``/_sim/calls`` and
``/_sim/state``.
"""

from __future__ import annotations

import errno
import importlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from rich.console import Console

from adapters.registry import installed
from adapters.simulation import Simulator, TicketRef
from connector.core.errors import PortBusy, SandboxError
from connector.testing.uppzy_sim import UppzySimulator

DEFAULT_PORT = 8800
SEED = [
    ("Dana Novak", "Password reset", "How do I reset my password?"),
    ("Lee Park", "Refund", "Can I get a refund for last month's invoice?"),
    ("Ana Silva", "Shipping", "Do you ship to Norway?"),
    ("Omar Haddad", "App crash", "The mobile app crashes when I open settings."),
    ("Mia Keller", "Invoices", "Where can I download my invoices?"),
]
# Zendesk's export leaves out the newest minute (the simulator does too, by default); a sandbox
# someone plays with waits 5 seconds instead, so a new message shows up while they watch.
SIMULATOR_OPTIONS: dict[str, dict[str, Any]] = {"zendesk": {"exclude_newest": 5.0}}


def load_simulator(path: str) -> type[Simulator]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def simulator_types() -> list[tuple[str, str]]:
    """(adapter type, simulator import path) of each installed adapter that ships a simulator,
    in the order their ports follow the Uppzy simulator's."""
    return [(name, entry.cls.simulator) for name, entry in sorted(installed().items())
            if entry.cls is not None and entry.cls.simulator]


def helpdesk_url(helpdesk: str, base_port: int) -> str:
    """Where ``connector sandbox --port base_port`` serves ``helpdesk``'s simulator."""
    names = [name for name, _path in simulator_types()]
    if helpdesk not in names:
        raise SandboxError(f"no simulator for {helpdesk!r}: choose one of {', '.join(names)}")
    return f"http://127.0.0.1:{base_port + 1 + names.index(helpdesk)}"


def start_all(base_port: int = 0) -> tuple[UppzySimulator, dict[str, Simulator]]:
    """Start Uppzy's simulator on ``base_port`` and one per helpdesk on the ports after it
    (``0``: any free ports). On a busy port, stop what started and raise ``PortBusy``."""
    started: list[Simulator] = []
    try:
        uppzy = _start(UppzySimulator(port=base_port), "uppzy", base_port, started)
        helpdesks: dict[str, Simulator] = {}
        for offset, (type_name, path) in enumerate(simulator_types(), start=1):
            port = base_port + offset if base_port else 0
            sim = load_simulator(path)(port=port, **SIMULATOR_OPTIONS.get(type_name, {}))
            helpdesks[type_name] = _start(sim, type_name, base_port, started)
    except BaseException:
        for sim in reversed(started):
            sim.stop()
        raise
    return uppzy, helpdesks


S = TypeVar("S", bound=Simulator)


def _start(sim: S, name: str, base_port: int, started: list[Simulator]) -> S:
    try:
        sim.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        last = base_port + len(simulator_types())
        raise PortBusy(
            f"port {sim.port} (the {name} simulator) is already in use. The sandbox needs ports "
            f"{base_port}-{last}: choose others with --port N (N and the {last - base_port} "
            "after it), or --port 0 for any free ones."
        ) from None
    started.append(sim)
    return sim


def seed(helpdesks: dict[str, Simulator], count: int) -> dict[str, list[TicketRef]]:
    """``count`` tickets from new customers on each helpdesk, each with one question."""
    return {
        type_name: [sim.seed_ticket(*SEED[i % len(SEED)]) for i in range(count)]
        for type_name, sim in helpdesks.items()
    }


def sandbox_config(uppzy: UppzySimulator, helpdesks: dict[str, Simulator]) -> dict[str, Any]:
    """A config for ``connector run``: a database of its own per sandbox start (the simulators
    start from scratch every time, so an earlier run's cursors and ticket ids mean nothing), and
    a day's ``start_from``, so the seeded tickets are drafted however late the daemon starts."""
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": "test-key", "site_id": "site-1",
                  "tenant_id": "tenant-1"},
        "database": {"url": f"sqlite:///sandbox-{time.strftime('%Y%m%d-%H%M%S')}.db"},
        "adapters": [
            {"name": f"sandbox-{type_name}", "type": type_name, **sim.adapter_config(),
             "poll_interval": "2s", "start_from": "1d"}
            for type_name, sim in helpdesks.items()
        ],
    }


def serve(base_port: int, console: Console, stop: threading.Event, seed_count: int = 3) -> None:
    """Run the simulators until ``stop``; raises ``PortBusy`` before printing anything."""
    uppzy, helpdesks = start_all(base_port)
    try:
        seeded = seed(helpdesks, seed_count)
        _print_intro(console, uppzy, helpdesks, seeded, base_port)
        stop.wait()
    finally:
        for sim in helpdesks.values():
            sim.stop()
        uppzy.stop()


def _print_intro(console: Console, uppzy: UppzySimulator, helpdesks: dict[str, Simulator],
                 seeded: dict[str, list[TicketRef]], base_port: int) -> None:
    """Addresses, then the play commands, then the config last: everything from its heading
    to the "Faults:" line is YAML, so a script can cut it out."""
    def say(text: str = "") -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    say(f"uppzy simulator:     {uppzy.base_url}")
    for type_name, sim in helpdesks.items():
        ids = ", ".join(map(str, seeded[type_name])) or "none (--empty)"
        say(f"{type_name + ' simulator:':<21}{sim.url}  tickets: {ids}")
    if helpdesks:
        _print_play(say, helpdesks, seeded, base_port)
    say("\n# then draft answers: save the config below as sandbox.yaml and run")
    say("#   connector run --config sandbox.yaml")
    say("# a config for these simulators (save as sandbox.yaml):")
    say(yaml.safe_dump(sandbox_config(uppzy, helpdesks), sort_keys=False).rstrip())
    say("Faults: POST /_sim/faults, calls: GET /_sim/calls, state: GET /_sim/state. "
        "Ctrl-C stops.")


def _print_play(say: Callable[[str], None], helpdesks: dict[str, Simulator],
                seeded: dict[str, list[TicketRef]], base_port: int) -> None:
    name, sim = next(iter(helpdesks.items()))
    ticket = seeded[name][0] if seeded[name] else 1
    where = f"--helpdesk {name}" + ("" if base_port == DEFAULT_PORT else f" --port {base_port}")
    if base_port == 0:
        where = f"--url {sim.url}"
    say("\n# play the customer and the agent (--helpdesk: any simulator above):")
    say(f'connector sandbox ticket new {where} "Do you have a student discount?"')
    say(f'connector sandbox ticket reply {where} --ticket {ticket} "One more question: ..."')
    say(f'connector sandbox ticket reply {where} --ticket {ticket} --agent "Done, see you!"')
    say(f"connector sandbox ticket resolve {where} --ticket {ticket}")
    say("# or the same over HTTP:")
    say(f"curl -X POST {sim.url}/_sim/tickets -d '{{\"body\": \"Do you have a student "
        "discount?\"}'")
    say(f"curl -X POST {sim.url}/_sim/tickets/{ticket}/customer_reply -d '{{\"body\": \"...\"}}'")
    say(f"curl -X POST {sim.url}/_sim/tickets/{ticket}/agent_reply -d '{{\"body\": \"...\"}}'")
    say(f"curl -X POST {sim.url}/_sim/tickets/{ticket}/resolve")


def ticket_action(url: str, helpdesk: str | None, path: str, payload: dict[str, Any]
                  ) -> dict[str, Any]:
    """POST one play action to a running simulator; its answer, or ``SandboxError``."""
    body = {**payload, **({"helpdesk": helpdesk} if helpdesk else {})}
    request = urllib.request.Request(
        f"{url.rstrip('/')}/_sim/{path}", method="POST",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise SandboxError(f"{url}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SandboxError(f"no sandbox answers at {url} ({exc}): is `connector sandbox` "
                           "running, with the same --port?") from None
    return answer
