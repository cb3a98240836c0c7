"""A real Request Tracker for the test session (``scripts/rt_server.py``), or a clear skip.

Without RT's Debian packages the RT tests are skipped with the command that installs them; with
``CI=true`` that skip is a failure instead, so a CI machine that lost RT cannot pass silently.
When the packages are there but RT will not start, that is a failure everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import in_ci, load_script

rt_server_module = load_script("rt_server")
RTServer = rt_server_module.RTServer
RTUser = rt_server_module.RTUser
AGENT = rt_server_module.AGENT
CUSTOMER = rt_server_module.CUSTOMER



@pytest.fixture(scope="session")
def rt_server() -> Iterator[RTServer]:
    """RT 5 on 127.0.0.1 with the seed of ``scripts/rt_server.py``; stopped after the session."""
    if rt_server_module.installed_version() is None:
        reason = f"Request Tracker is not installed; {rt_server_module.INSTALL_HINT}"
        if in_ci():
            pytest.fail(f"{reason} (CI=true: RT tests must run)", pytrace=False)
        pytest.skip(reason)
    server = RTServer()
    try:
        server.start()
    except rt_server_module.RTError as exc:
        pytest.fail(f"Request Tracker did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
