"""The conformance kit reaches a third-party adapter's suite through its pytest plugin alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from connector.testing.conformance import SCENARIOS

THIRD_PARTY_SUITE = '''
import pytest

from connector.testing.drivers.zendesk import open_driver  # stands in for their own driver
from connector.testing.pytest_plugin import run_scenario


@pytest.fixture
def conformance_driver():
    with open_driver() as driver:
        yield driver


def test_conformance(conformance_driver, conformance_scenario):
    run_scenario(conformance_driver, conformance_scenario)
'''


def test_a_suite_outside_ours_gets_every_scenario_from_the_plugin(tmp_path: Path) -> None:
    """No conftest of ours in sight: the installed plugin parametrises the scenarios, runs
    them, and turns a helpdesk's missing feature into a skip that says why."""
    (tmp_path / "test_their_adapter.py").write_text(textwrap.dedent(THIRD_PARTY_SUITE))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(SCENARIOS) - 1} passed, 1 skipped" in run.stdout
    assert "zendesk has no such thing: Zendesk tickets are not moved" in run.stdout
