"""The layers of docs/architecture.md hold: no import goes the wrong way.

Each module belongs to the first layer whose prefix matches its dotted name; a layer may import
only the layers listed for it (and itself). The check reads the source with ``ast``, so an
import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).parent.parent

CORE = "connector.core"
ADAPTERS = "adapters"
SIMULATORS = "simulators"  # adapters.simulation and every adapters.<type>.simulator package
# Layer name -> the layers it may import. The package root (``connector``: its version) is
# open to everyone.
ALLOWED: dict[str, set[str]] = {
    CORE: set(),
    ADAPTERS: {CORE},
    SIMULATORS: {CORE, "adapters.shared"},
    "connector.uppzy": {CORE},
    "connector.config": {CORE, ADAPTERS},
    "connector.store": {CORE, "connector.config"},
    "connector.engine": {CORE, ADAPTERS, "connector.uppzy", "connector.config", "connector.store"},
    "connector.daemon": {CORE, ADAPTERS, "connector.uppzy", "connector.config", "connector.store",
                         "connector.engine"},
    "connector.cli": {CORE, ADAPTERS, "connector.uppzy", "connector.config", "connector.store",
                      "connector.engine", "connector.daemon", "connector.testing"},
    "connector.testing": {CORE, ADAPTERS, SIMULATORS, "connector.uppzy", "connector.config",
                          "connector.store", "connector.engine", "connector.daemon"},
    "connector.__main__": {"connector.cli"},
}
# Helpers of the adapters layer that simulators may use too: they import nothing but the core.
SHARED_WITH_SIMULATORS = ("adapters.text", "adapters.signatures")


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None for the package root and outsiders."""
    if module == "adapters.simulation" or (module.startswith("adapters.")
                                           and "simulator" in module.split(".")[2:3]):
        return SIMULATORS
    if module in SHARED_WITH_SIMULATORS:
        return "adapters.shared"
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(f"{layer}."):
            return layer
    return None


def may_import(importer: str, imported: str) -> bool:
    source, target = layer_of(importer), layer_of(imported)
    if target is None or target == source:
        return True
    if source == "adapters.shared":
        source = ADAPTERS
    allowed = ALLOWED[source] if source else set()
    if target == "adapters.shared":  # adapters' helpers are open to whoever may use adapters
        return "adapters.shared" in allowed or ADAPTERS in allowed or source == ADAPTERS
    return target in allowed


def imports_of(path: Path, root: Path) -> set[str]:
    """Our modules that ``path`` imports: ``from x import y`` counts as ``x.y`` when that is a
    module, else as ``x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                inner = f"{node.module}.{alias.name}"
                found.add(inner if _is_module(root, inner) else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("connector", "adapters")}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def violations(root: Path) -> list[str]:
    found = []
    for package in ("connector", "adapters"):
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            importer = module_name(path, root)
            for imported in sorted(imports_of(path, root)):
                if not may_import(importer, imported):
                    found.append(f"{importer} imports {imported}")
    return found


def _is_module(root: Path, name: str) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def test_no_import_goes_the_wrong_way() -> None:
    assert violations(ROOT) == []


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    for package in ("connector", "adapters"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    adapter = tmp_path / "adapters" / "zendesk" / "adapter.py"
    adapter.write_text(adapter.read_text() + "\nfrom connector.engine import turns\n")
    simulator = tmp_path / "adapters" / "zendesk" / "simulator" / "__init__.py"
    simulator.write_text(simulator.read_text() + "\nfrom adapters.base import Adapter\n")
    core = tmp_path / "connector" / "core" / "http.py"
    core.write_text(core.read_text() + "\n\ndef late():\n    from connector import config\n")
    assert violations(tmp_path) == [
        "connector.core.http imports connector.config",
        "adapters.zendesk.adapter imports connector.engine.turns",
        "adapters.zendesk.simulator imports adapters.base",
    ]


def test_layers_of_known_modules() -> None:
    assert layer_of("adapters.zendesk.simulator") == SIMULATORS
    assert layer_of("adapters.zendesk.simulator.tickets") == SIMULATORS
    assert layer_of("adapters.intercom.simulator.search") == SIMULATORS  # a simulator package
    assert layer_of("adapters.intercom.search") == ADAPTERS
    assert layer_of("adapters.zendesk.adapter") == ADAPTERS
    assert layer_of("connector.core.http") == CORE
    assert layer_of("connector.engine.turns") == "connector.engine"
    assert not may_import("adapters.base", "connector.testing.conformance")
    assert may_import("connector.testing.demo", "adapters.zendesk.simulator")
    assert not may_import("connector.engine.turns", "adapters.zendesk.simulator")
