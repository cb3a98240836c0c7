"""Modules stay small enough to read in one sitting, functions small enough to hold in one's head.

The restructuring issue set the limits: every module under ``connector/`` and ``adapters/`` has
fewer than 500 lines, and no function there has more than 60.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("connector", "adapters")
MAX_MODULE_LINES = 499
MAX_FUNCTION_LINES = 60
# A migration is frozen history: it must keep doing, line for line, what it did when databases
# were upgraded with it, so it is not split to meet a limit that came after it.
FROZEN = ROOT / "connector" / "store" / "migrations" / "versions"


def modules() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if not path.is_relative_to(FROZEN)]


def long_modules() -> list[str]:
    found = []
    for path in modules():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines")
    return found


def long_functions() -> list[str]:
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - start + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                 f"{lines} lines")
    return found


def test_no_module_reaches_500_lines() -> None:
    offenders = long_modules()
    assert not offenders, "modules of 500 lines or more:\n" + "\n".join(offenders)


def test_no_function_exceeds_60_lines() -> None:
    offenders = long_functions()
    assert not offenders, "functions over 60 lines:\n" + "\n".join(offenders)
