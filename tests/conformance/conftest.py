"""Every conformance scenario against every helpdesk driver that is available.

Simulator-backed drivers are found, not listed: any ``connector/testing/drivers/<type>.py`` with
an ``open_driver()`` joins the run as soon as it exists. Request Tracker needs a real server, so its
driver lives here and uses the session's ``rt_server`` (through a fault proxy of its own); so does
django-helpdesk's, with the session's ``djhd_server``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial

import pytest
from djhd_driver import open_djhd_driver
from rt_driver import open_rt_driver

import connector.testing.drivers
from connector.testing.conformance import HelpdeskDriver

RT = "rt"
DJHD = "django_helpdesk"


def simulator_drivers() -> dict[str, Callable[[], AbstractContextManager[HelpdeskDriver]]]:
    """``open_driver`` of every module in ``connector.testing.drivers``.

    A driver module that exists but does not import is an error, not a silent skip.
    """
    found: dict[str, Callable[[], AbstractContextManager[HelpdeskDriver]]] = {}
    for module in pkgutil.iter_modules(connector.testing.drivers.__path__):
        name = f"connector.testing.drivers.{module.name}"
        found[module.name] = importlib.import_module(name).open_driver
    return found


SIMULATOR_DRIVERS = simulator_drivers()
DRIVER_NAMES = [*sorted(SIMULATOR_DRIVERS), RT, DJHD]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every driver; the scenarios come from the kit's plugin (``conformance_scenario``)."""
    if "driver" in metafunc.fixturenames:
        metafunc.parametrize("driver", DRIVER_NAMES, indirect=True)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[HelpdeskDriver]:
    """A fresh simulator per test; the one real server of the session for RT and
    django-helpdesk."""
    opener = SIMULATOR_DRIVERS.get(request.param)
    if request.param == RT:
        opener = partial(open_rt_driver, request.getfixturevalue("rt_server"))
    elif request.param == DJHD:
        opener = partial(open_djhd_driver, request.getfixturevalue("djhd_server"))
    assert opener is not None, f"no driver for {request.param}"
    with opener() as opened:
        assert isinstance(opened, HelpdeskDriver), f"{request.param}: not a HelpdeskDriver"
        yield opened
