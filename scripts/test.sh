#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs them: a virtualenv with the
# project and its test extras, Request Tracker 5 from Debian's packages (for the real-RT tests),
# django-helpdesk in a virtualenv of its own (for the real django-helpdesk tests), the linter,
# and pytest. Extra arguments go to pytest (e.g. -k zendesk).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test]'

if command -v apt-get >/dev/null 2>&1; then
    bash scripts/install-rt.sh
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    apt_install() {
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
            || "${SUDO[@]}" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $*"
    }
    # tests/test_deploy.py verifies the shipped units with systemd-analyze (package systemd;
    # it reads unit files without a running systemd, as in a container).
    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
    # tests/test_adoption.py opens the report page in headless Chromium.
    command -v chromium >/dev/null 2>&1 || apt_install chromium
else
    echo "apt-get not found: Request Tracker, systemd unit and Chromium tests will be skipped (CI=true turns that into a failure)."
fi

# django-helpdesk from PyPI into ~/.cache/connector-djhd/venv (idempotent). Without a network the
# django-helpdesk tests skip with the reason (CI=true turns that into a failure).
"$VENV/bin/python" scripts/djhd_server.py install \
    || echo "django-helpdesk could not be installed: its tests will be skipped."

"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q "$@"
