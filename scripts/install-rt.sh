#!/usr/bin/env bash
# Installs Request Tracker 5 from Debian packages for the RT adapter tests (scripts/rt_server.py).
#
# Idempotent and non-interactive: it does nothing when the packages are already there, refreshes
# the package lists only when they are missing or stale, and keeps maintainer scripts from
# configuring a system-wide database or starting daemons (the test server runs in a temp dir).
set -euo pipefail

PACKAGES=(request-tracker5 rt5-db-sqlite rt5-standalone w3m)

installed() {
    local status
    status=$(dpkg-query -W -f='${Status}\n' "${PACKAGES[@]}" 2>/dev/null) || return 1
    [ "$(grep -cx 'install ok installed' <<<"$status")" -eq "${#PACKAGES[@]}" ]
}

if installed; then
    echo "Request Tracker is already installed."
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "run as root (or install sudo)" >&2; exit 1; }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

# Without this the postinst creates and fills a system-wide SQLite database nobody uses, and
# man-db rebuilds its index for several seconds.
"${SUDO[@]}" debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/dbconfig-install boolean false
request-tracker5 request-tracker5/install-cronjobs boolean false
man-db man-db/auto-update boolean false
EOF

# request-tracker5 pulls in an MTA (exim4); a policy-rc.d that exits 101 stops its postinst from
# starting it. Keep an existing policy; otherwise add one for the duration of the install only.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

if ! apt-cache show request-tracker5 >/dev/null 2>&1; then
    "${SUDO[@]}" apt-get update -q
fi

apt_install() {
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
}
# Stale lists point at superseded .debs (404); one update and a retry fixes that.
if ! apt_install; then
    "${SUDO[@]}" apt-get update -q
    apt_install
fi
echo "Request Tracker installed."
