"""Local servers that the tests and the sandbox start and must stop: free ports, and stopping a
whole process group.

Real servers (Request Tracker's Starlet master and workers, Django's runserver) run in a process
group of their own, so one signal reaches every process; stopping waits until none is left, so
no test leaves a server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(pgid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the group, then SIGKILL what is left after ``timeout``; reaps our own child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group; zombies wait for a reaper that
    may never come in a container, so they do not count."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
