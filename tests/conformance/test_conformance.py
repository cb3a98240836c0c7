"""The adapter conformance suite: each scenario of ``adapters.testing`` on each driver."""

from __future__ import annotations

import pytest

from adapters.testing import SCENARIOS, HelpdeskDriver, Unsupported


def test_scenario(driver: HelpdeskDriver, scenario: str) -> None:
    try:
        SCENARIOS[scenario](driver)
    except Unsupported as exc:
        pytest.skip(f"{driver.type_name} has no such thing: {exc}")
