"""The adapter conformance suite: each scenario of the conformance kit on each driver."""

from __future__ import annotations

import pytest

from connector.testing.conformance import SCENARIOS, HelpdeskDriver, Unsupported


def test_scenario(driver: HelpdeskDriver, scenario: str) -> None:
    try:
        SCENARIOS[scenario](driver)
    except Unsupported as exc:
        pytest.skip(f"{driver.type_name} has no such thing: {exc}")
