"""``connector check --smoke`` (the rollout checklist) and ``connector sessions`` (the join)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.cli.checks import run_checks
from connector.cli.sessions import collect
from connector.config import Config
from connector.core.errors import SessionsError
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator


def connector(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True,
                          text=True, timeout=60)


# ----- smoke check -------------------------------------------------------------------------------
def test_smoke_check_runs_the_rollout_checklist_in_a_throwaway_session(
    config_file: Callable[..., Path], zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    run = connector("check", "--smoke", "--config",
                    str(config_file(uppzy={"tenant_id": "tenant-1"})))
    assert run.returncode == 0, run.stdout + run.stderr
    steps = re.findall(r"^(ok|failed|skip)\s+(.+?)\s{2,}\s*(\d+) ms", run.stdout,
                       re.MULTILINE)
    assert [(state, name) for state, name, _ms in steps] == [
        ("ok", "config"), ("ok", "database"), ("ok", "uppzy tenant limits"),
        ("ok", "uppzy site site-1"), ("ok", "uppzy sync chat"), ("ok", "uppzy async chat"),
        ("ok", "uppzy feedback"), ("ok", "uppzy close session"), ("ok", "adapter zd"),
        ("skip", "webhooks zd"), ("ok", "ops listener"),
    ]
    requests = uppzy.requests_for()
    assert [r["mode"] for r in requests] == ["sync", "async"]
    session = requests[0]["session_id"]
    assert session.startswith("connector-smoke-") and requests[1]["session_id"] == session
    assert uppzy.feedback_recorded() == {requests[1]["request_id"]: "good"}
    assert uppzy.closed_sessions() == {session: 1}
    assert not zendesk.notes_by(zendesk.bot_user_id)  # the helpdesk is only read


def test_smoke_check_reports_each_failed_step_and_still_closes_the_session(
    make_config: Callable[..., Config], uppzy: UppzySimulator
):
    uppzy.fail_ratio = 1.0  # every async request fails server-side
    uppzy.add_fault(Fault(endpoint="chat", status=503, body={"error": "overloaded"}, times=1))
    results = {r.name: (r.status == "ok", r.detail)
               for r in run_checks(make_config(), smoke=True)}
    assert results["uppzy sync chat"] == (False, "HTTP 503: overloaded")
    assert results["uppzy async chat"][0] is False
    assert "failed: model backend unavailable" in results["uppzy async chat"][1]
    assert results["uppzy feedback"] == (False, "skipped: no completed async answer to rate")
    assert results["uppzy close session"][0] is True
    assert len(uppzy.closed_sessions()) == 1


# ----- sessions ----------------------------------------------------------------------------------
@pytest.fixture
def two_sessions(
    make_engine: Callable[..., Runtime], zendesk: ZendeskSimulator, uppzy: UppzySimulator
) -> tuple[Runtime, int, int]:
    """One ticket answered and still open, one answered and then solved (session closed)."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    still_open = zendesk.create_ticket(customer, "Is it open?")
    solved = zendesk.create_ticket(customer, "Is it solved?")
    engine = make_engine()
    assert engine.run_once()
    zendesk.set_status(solved, "solved")
    assert engine.run_once()
    return engine, still_open, solved


def test_sessions_join_ours_with_uppzys_list(
    two_sessions: tuple[Runtime, int, int], uppzy: UppzySimulator
):
    engine, still_open, solved = two_sessions
    uppzy.sessions_page_size = 1  # the list comes in pages
    report = collect(engine.config)
    rows = {s["session_id"]: s for s in report["sessions"]}
    assert rows[f"zd-{still_open}"]["state"] == "open"
    assert rows[f"zd-{still_open}"]["uppzy"]["status"] == "open"
    assert rows[f"zd-{still_open}"]["uppzy"]["messages"] == 1
    assert rows[f"zd-{solved}"]["state"] == "closed"
    assert rows[f"zd-{solved}"]["uppzy"]["status"] == "closed"
    assert report["sites"] == {"site-1": {"ok": True, "error": None, "listed": 2, "matched": 2}}

    assert [s["session_id"] for s in collect(engine.config, status="open")["sessions"]] == [
        f"zd-{still_open}"]
    assert [s["session_id"] for s in collect(engine.config, status="closed")["sessions"]] == [
        f"zd-{solved}"]
    with pytest.raises(SessionsError, match="--status"):
        collect(engine.config, status="gone")
    with pytest.raises(SessionsError, match="no adapter named 'nope'"):
        collect(engine.config, adapter="nope")


def test_sessions_tolerate_another_list_shape_and_a_missing_list(
    two_sessions: tuple[Runtime, int, int], uppzy: UppzySimulator
):
    engine, still_open, _solved = two_sessions
    uppzy.add_fault(Fault(endpoint="sessions", status=200, times=1, body={"data": {"items": [
        {"id": f"zd-{still_open}", "state": "active", "updated_at": "2026-01-02T03:04:05Z",
         "messages": [{"role": "user"}, {"role": "assistant"}]},
        {"id": "someone-else", "state": "active"},
    ]}}))
    rows = {s["session_id"]: s for s in collect(engine.config)["sessions"]}
    assert rows[f"zd-{still_open}"]["uppzy"] == {
        "status": "active", "last_activity": "2026-01-02T03:04:05Z", "messages": 2}

    uppzy.sessions_list = False  # this Uppzy has no session list at all: 404
    report = collect(engine.config)
    assert {s["session_id"] for s in report["sessions"]} == set(rows)
    assert all(s["uppzy"] is None for s in report["sessions"])
    assert report["sites"]["site-1"]["ok"] is False
    assert "404" in report["sites"]["site-1"]["error"]


def test_sessions_command(
    two_sessions: tuple[Runtime, int, int], config_file: Callable[..., Path]
):
    _engine, still_open, _solved = two_sessions
    path = str(config_file())
    listed = connector("sessions", "--config", path, "--status", "open", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [s["session_id"] for s in data["sessions"]] == [f"zd-{still_open}"]
    table = connector("sessions", "--config", path, "--adapter", "zd")
    assert table.returncode == 0 and f"zd-{still_open}" in table.stdout
    assert connector("sessions", "--config", path, "--status", "gone").returncode == 2
    assert connector("sessions", "--config", path, "--adapter", "nope").returncode == 2
