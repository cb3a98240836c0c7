#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs them: a virtualenv with the
# project and its test extras, Request Tracker 5 from Debian's packages (for the real-RT tests),
# the linter, and pytest. Extra arguments go to pytest (e.g. -k zendesk).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test]'

if command -v apt-get >/dev/null 2>&1; then
    bash scripts/install-rt.sh
else
    echo "apt-get not found: Request Tracker tests will be skipped (CI=true turns that into a failure)."
fi

"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q "$@"
