"""The conformance kit as a pytest plugin: a third-party adapter proves itself with the same
scenarios as ours without copying our conftest.

Installed with the connector (the ``pytest11`` entry point ``connector-conformance``), it is
loaded by any pytest run in an environment that has the connector, and does nothing until a
test asks for ``conformance_scenario``. A third-party suite writes one fixture and one test:

    @pytest.fixture
    def conformance_driver():
        with open_my_driver() as driver:  # a HelpdeskDriver on a simulator or staging account
            yield driver

    def test_conformance(conformance_driver, conformance_scenario):
        run_scenario(conformance_driver, conformance_scenario)

Each scenario then runs as a test of its own; one the helpdesk has no such thing for is skipped
with the driver's reason, so a skip always says why.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connector.testing.helpdesk_driver import HelpdeskDriver, Unsupported


def _scenarios() -> dict[str, Callable[[HelpdeskDriver], None]]:
    # Imported on first use: the scenarios pull in the engine and its store, which a pytest run
    # that never asks for them (any other project in the same environment) should not pay for.
    from connector.testing.conformance import SCENARIOS

    return SCENARIOS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_scenario" in metafunc.fixturenames:
        metafunc.parametrize("conformance_scenario", list(_scenarios()))


def run_scenario(driver: HelpdeskDriver, name: str) -> None:
    """Run scenario ``name`` against ``driver``; a helpdesk without such a thing is a skip."""
    try:
        _scenarios()[name](driver)
    except Unsupported as exc:
        pytest.skip(f"{driver.type_name} has no such thing: {exc}")
