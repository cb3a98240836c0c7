"""Faults seen only from outside the process: signals during slow calls, odd remote text."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from test_daemon import start_daemon, stop

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.testing.uppzy_sim import UppzySimulator


def test_sigterm_during_a_slow_change_feed_call_exits_within_the_stop_timeout(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    """The change feed takes 25 s to answer (under the adapter's 30 s read timeout): a stop
    must not wait for it, or systemd's TimeoutStopSec=20 kills the daemon instead."""
    zendesk.add_fault(Fault(kind="delay", endpoint="incremental_tickets", delay=25.0, times=1))
    proc = start_daemon(config_file(), tmp_path / "daemon.log")
    time.sleep(3.0)  # the first poll starts at once and now waits on the slow answer
    assert stop(proc, signal.SIGTERM, timeout=15) == 0


def test_check_prints_remote_text_that_looks_like_markup(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    zendesk.users[zendesk.bot_user_id].name = "Bot [/] [bold]odd[/bold]"
    result = subprocess.run(
        [sys.executable, "-m", "connector", "check", "--config", str(config_file())],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Bot [/] [bold]odd[/bold]" in result.stdout
