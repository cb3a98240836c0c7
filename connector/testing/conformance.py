"""The contract between the adapter conformance suite and each helpdesk under test.

The suite (``tests/conformance/``) runs the same scenarios against every adapter. It acts on the
helpdesk only through a ``HelpdeskDriver``: a small object that plays the people around a ticket
(customer, agent, automation) on a simulator or a real server, and can make the helpdesk
misbehave. A third-party adapter gets the same proof by writing one driver.

Finding drivers: an adapter package that ships a simulator also ships ``adapters/<type>/driver.py``
with a context manager ``open_driver()`` that starts its simulator, yields a ``HelpdeskDriver`` and
stops everything on exit (so the suite can also be pointed at a staging account by a driver that
talks to a real helpdesk). ``tests/conformance`` imports every such module it finds; drivers for
helpdesks that need a real server (Request Tracker) live with the tests.

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
    SimulatorRateLimits,
    Unsupported,
)
from connector.testing.scenarios.adapter import ADAPTER_SCENARIOS
from connector.testing.scenarios.engine import ENGINE_SCENARIOS

__all__ = [
    "ADAPTER_SCENARIOS", "ENGINE_SCENARIOS", "PAGE_SIZE", "REMOVALS", "SCENARIOS",
    "HelpdeskDriver", "SimulatorRateLimits", "Unsupported",
]

SCENARIOS = {**ADAPTER_SCENARIOS, **ENGINE_SCENARIOS}
