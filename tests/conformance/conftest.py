"""Every conformance scenario against every helpdesk driver that is available.

Simulator-backed drivers are found, not listed: any ``adapters/<type>/driver.py`` with an
``open_driver()`` joins the run as soon as it exists. Request Tracker needs a real server, so its
driver lives here and uses the session's ``rt_server`` (through a fault proxy of its own).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial

import pytest
from rt_driver import open_rt_driver

import adapters
from adapters.testing import SCENARIOS, HelpdeskDriver

RT = "rt"


def simulator_drivers() -> dict[str, Callable[[], AbstractContextManager[HelpdeskDriver]]]:
    """``open_driver`` of every adapter package that ships a ``driver`` module.

    A driver module that exists but does not import is an error, not a silent skip.
    """
    found: dict[str, Callable[[], AbstractContextManager[HelpdeskDriver]]] = {}
    for package in pkgutil.iter_modules(adapters.__path__):
        name = f"adapters.{package.name}.driver"
        if package.ispkg and importlib.util.find_spec(name) is not None:
            found[package.name] = importlib.import_module(name).open_driver
    return found


SIMULATOR_DRIVERS = simulator_drivers()
DRIVER_NAMES = [*sorted(SIMULATOR_DRIVERS), RT]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        metafunc.parametrize("scenario", list(SCENARIOS))
    if "driver" in metafunc.fixturenames:
        metafunc.parametrize("driver", DRIVER_NAMES, indirect=True)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[HelpdeskDriver]:
    """A fresh simulator per test; the one Request Tracker of the session for RT."""
    opener = SIMULATOR_DRIVERS.get(request.param)
    if opener is None:  # RT
        opener = partial(open_rt_driver, request.getfixturevalue("rt_server"))
    with opener() as opened:
        assert isinstance(opened, HelpdeskDriver), f"{request.param}: not a HelpdeskDriver"
        yield opened
