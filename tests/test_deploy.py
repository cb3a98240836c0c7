"""The shipped systemd units, checked as systemd itself reads them, and SIGHUP as a clean stop.

The units in ``deploy/systemd/`` are what docs/deploy.md tells operators to copy, so these tests
read exactly those files, never a copy kept in the docs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import in_ci

from adapters.zendesk.simulator import ZendeskSimulator

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
SHIPPED_EXEC = "/opt/uppzy-connector/.venv/bin/connector"
UNIT_FILES = sorted(UNITS.glob("*.service"))


def unit_lines(unit: Path) -> list[tuple[int, str]]:
    """(line number, text) of every setting and section header; comments and blanks left out."""
    return [
        (number, line.strip()) for number, line in enumerate(unit.read_text().splitlines(), 1)
        if line.strip() and not line.lstrip().startswith(("#", ";"))
    ]


def settings(unit: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for _n, line in unit_lines(unit) if "=" in line)


def test_units_are_shipped():
    assert {u.name for u in UNIT_FILES} == {"uppzy-connector.service",
                                            "uppzy-connector@.service"}


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda u: u.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path):
    """``systemd-analyze verify`` on the shipped unit, with one change: ExecStart's program.

    verify fails when ExecStart's program does not exist, and the shipped path
    (``/opt/uppzy-connector/.venv/bin/connector``) is not installed here, so the test verifies a
    copy (same file name, so a template stays a template) whose ExecStart points at the
    ``connector`` script of the virtualenv running the tests. Every other line is verified as
    shipped. verify exits 0 on values it ignores ("Failed to parse value", "Unknown key"), so
    any line it prints about our unit fails the test too; lines about other units installed
    on the machine are not ours and are left out.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if in_ci():
            pytest.fail("systemd-analyze is missing: scripts/test.sh installs it (package systemd)")
        pytest.skip("systemd-analyze is not installed (scripts/test.sh installs it)")
    connector = Path(sys.executable).parent / "connector"
    assert connector.exists(), "the test venv has no connector script: pip install -e ."
    text = unit.read_text()
    assert SHIPPED_EXEC in text
    copy = tmp_path / unit.name
    copy.write_text(text.replace(SHIPPED_EXEC, str(connector)))
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True,
                            text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "uppzy-connector" in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda u: u.name)
def test_unit_has_no_comment_after_a_value(unit: Path):
    """systemd takes "#" only at the start of a line as a comment: after a value, it is part
    of the value (an ``EnvironmentFile=`` path with the comment in it), which verify cannot
    always see."""
    assert [(n, line) for n, line in unit_lines(unit) if "#" in line] == []


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda u: u.name)
def test_unit_restarts_only_what_a_restart_can_fix_and_is_hardened(unit: Path):
    values = settings(unit)
    assert values["Restart"] == "on-failure"
    assert values["RestartPreventExitStatus"].split() == ["2", "3"]
    assert values["User"] == "uppzy-connector"
    assert values["StateDirectory"] == "uppzy-connector"
    assert values["EnvironmentFile"] == "/etc/uppzy-connector/env"
    for option, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
        assert values[option] == value, option


@pytest.fixture
def daemon(config_file, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--config", str(config_file())],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL,
    )
    yield proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_sighup_stops_the_daemon_cleanly(daemon, zendesk: ZendeskSimulator):
    """A HUP (a closed terminal, a reflexive ``kill -HUP``) is a clean stop with exit 0, like
    SIGTERM; there is no reload, so a changed config needs a restart."""
    proc, log = daemon
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    ticket = zendesk.create_ticket(customer, "Are you still there after a HUP?")
    deadline = time.monotonic() + 30
    while not zendesk.notes_by(zendesk.bot_user_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id)] == [ticket]
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert "stopping: SIGHUP" in text
    assert "stopped (exit 0)" in text
