"""``connector sandbox``: the simulators in the foreground, with a config that points at them.

Teams use it for staging checks: run the daemon (or ``connector check``) against it, inject
faults over HTTP at ``/_sim/faults``, and read ``/_sim/calls`` and ``/_sim/state``.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import yaml
from rich.console import Console

from adapters.registry import installed
from connector.sandbox.server import Simulator
from connector.sandbox.uppzy_sim import UppzySimulator


def load_simulator(path: str) -> type[Simulator]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def start_all(base_port: int = 0) -> tuple[UppzySimulator, dict[str, Simulator]]:
    """Start Uppzy's simulator and one per installed adapter that ships one."""
    uppzy = UppzySimulator(port=base_port).start()
    helpdesks: dict[str, Simulator] = {}
    offset = 1
    for type_name, entry in sorted(installed().items()):
        if entry.cls is None or not entry.cls.simulator:
            continue
        port = base_port + offset if base_port else 0
        helpdesks[type_name] = load_simulator(entry.cls.simulator)(port=port).start()
        offset += 1
    return uppzy, helpdesks


def sandbox_config(uppzy: UppzySimulator, helpdesks: dict[str, Simulator]) -> dict[str, Any]:
    return {
        "uppzy": {"base_url": uppzy.base_url, "api_key": "test-key", "site_id": "site-1",
                  "tenant_id": "tenant-1"},
        "database": {"url": "sqlite:///sandbox.db"},
        "adapters": [
            {"name": f"sandbox-{type_name}", "type": type_name, **sim.adapter_config()}
            for type_name, sim in helpdesks.items()
        ],
    }


def serve(base_port: int, console: Console, stop: threading.Event) -> None:
    uppzy, helpdesks = start_all(base_port)
    try:
        console.print(f"uppzy simulator:   {uppzy.base_url}")
        for type_name, sim in helpdesks.items():
            console.print(f"{type_name + ' simulator:':<19}{sim.url}")
        console.print("\n# a config for these simulators (save as sandbox.yaml):")
        console.print(yaml.safe_dump(sandbox_config(uppzy, helpdesks), sort_keys=False),
                      markup=False, highlight=False)
        console.print("Faults: POST /_sim/faults, calls: GET /_sim/calls. Ctrl-C stops.")
        stop.wait()
    finally:
        for sim in helpdesks.values():
            sim.stop()
        uppzy.stop()
