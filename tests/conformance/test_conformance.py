"""The adapter conformance suite: each scenario of the conformance kit on each driver, through
the kit's pytest plugin as a third-party adapter would run it."""

from __future__ import annotations

from connector.testing.conformance import HelpdeskDriver
from connector.testing.pytest_plugin import run_scenario


def test_scenario(driver: HelpdeskDriver, conformance_scenario: str) -> None:
    run_scenario(driver, conformance_scenario)
