"""The crash and fault soak (``bench/soak.py``) still runs end to end.

Not a reliability test: a handful of events cannot say much about the daemon, and on a daemon
that still loses work the soak rightly exits 1. What this guards is the script itself: that it
starts the simulators and the daemon, fires the events it was asked for, judges from the
simulators' records, writes its JSON, exits 1 exactly when it found a loss or a duplicate, and
leaves no process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
PROBLEMS = ("lost_turns", "duplicate_drafts", "duplicate_closes", "duplicate_feedback",
            "missing_closes", "missing_feedback", "public_posts")


@pytest.mark.timeout(120)
def test_a_short_soak_runs_judges_and_cleans_up(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--setup", "sqlite:1", "--events", "6",
         "--interval", "0.5", "--kinds", "kill,stop,uppzy_429,marker_paste,spaces_200kb",
         "--timeout-events", "2", "--outage", "2-4", "--settle", "30", "--quiet", "3",
         "--seed", "7", "--json", str(report)],
        cwd=BENCH, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    [result] = json.loads(report.read_text())
    verdict = result["verdict"]

    assert result["events"] == 6
    assert sum(result["events_by_kind"].values()) == 6
    assert set(result["events_by_kind"]) <= {"kill", "stop", "uppzy_429", "marker_paste",
                                             "spaces_200kb", "downtime"}
    assert result["created"]["tickets"] >= 1
    assert verdict["notes"] >= 1  # the daemon really ran and posted through the simulators
    assert (done.returncode == 1) == any(verdict[k] for k in PROBLEMS)
    assert "| lost turns (messages) |" in done.stdout
    assert not [pid for pid in result["pids"] if _running(pid)]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
