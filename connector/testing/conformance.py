"""The contract between the adapter conformance suite and each helpdesk under test.

The suite (``tests/conformance/``) runs the same scenarios against every adapter. It acts on the
helpdesk only through a ``HelpdeskDriver``: a small object that plays the people around a ticket
(customer, agent, automation) on a simulator or a real server, and can make the helpdesk
misbehave. A third-party adapter gets the same proof by writing one driver.

Finding drivers: a simulator-backed driver is ``connector/testing/drivers/<type>.py`` with a
context manager ``open_driver()`` that starts its simulator, yields a ``HelpdeskDriver`` and
stops everything on exit (a driver that talks to a staging account works the same way).
``tests/conformance`` runs every such module it finds; drivers for helpdesks that need a real
server (Request Tracker, django-helpdesk) live with the tests. A third-party adapter runs the
scenarios through the kit's pytest plugin (``connector.testing.pytest_plugin``).

Scenarios are plain functions taking a driver; they raise ``AssertionError`` when the adapter is
wrong and ``Unsupported`` when the helpdesk has no such thing. ``ADAPTER_SCENARIOS`` call the
adapter directly; ``ENGINE_SCENARIOS`` run the whole daemon against the Uppzy simulator, for the
invariants that belong to the pipeline.
"""

from __future__ import annotations

from connector.testing.helpdesk_driver import (
    PAGE_SIZE,
    REMOVALS,
    HelpdeskDriver,
    SimulatorDriver,
    SimulatorRateLimits,
    Unsupported,
)
from connector.testing.scenarios.adapter import ADAPTER_SCENARIOS
from connector.testing.scenarios.engine import ENGINE_SCENARIOS

__all__ = [
    "ADAPTER_SCENARIOS", "ENGINE_SCENARIOS", "PAGE_SIZE", "REMOVALS", "SCENARIOS",
    "HelpdeskDriver", "SimulatorDriver", "SimulatorRateLimits", "Unsupported",
]

SCENARIOS = {**ADAPTER_SCENARIOS, **ENGINE_SCENARIOS}
