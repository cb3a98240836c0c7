"""A real django-helpdesk for the test session (``scripts/djhd_server.py``), or a clear skip.

The server runs from a virtualenv of its own; when it is missing the fixture builds it from PyPI
(``scripts/test.sh`` does that up front). When it cannot be built (no network) the tests are
skipped with the reason; with ``CI=true`` that is a failure instead, so a CI machine that lost
django-helpdesk cannot pass silently. When it is installed but will not start, that is a failure
everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import in_ci, load_script

djhd_server_module = load_script("djhd_server")
DjhdServer = djhd_server_module.DjhdServer
DjhdUser = djhd_server_module.User
AGENT = djhd_server_module.AGENT
STAFFER = djhd_server_module.STAFFER
CUSTOMER = djhd_server_module.CUSTOMER
ADMIN = djhd_server_module.ADMIN



def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: django-helpdesk tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def djhd_server() -> Iterator[DjhdServer]:
    """django-helpdesk on 127.0.0.1 with the seed of ``scripts/djhd_server.py``."""
    if djhd_server_module.installed_version() != djhd_server_module.VERSION:
        try:
            djhd_server_module.install()
        except (djhd_server_module.DjhdError, OSError) as exc:
            _unavailable(f"django-helpdesk {djhd_server_module.VERSION} could not be installed "
                         f"({djhd_server_module.INSTALL_HINT}): {str(exc)[-300:]}")
    server = DjhdServer()
    try:
        server.start()
    except djhd_server_module.DjhdError as exc:
        pytest.fail(f"django-helpdesk did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
