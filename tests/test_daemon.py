"""The daemon as a process: kills and restarts, signals, exit codes, faults, secrets."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from support import API_KEY, ZD_TOKEN, wait_for

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.engine.runtime import Runtime
from connector.testing.uppzy_sim import UppzySimulator

_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test():
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def start_daemon(config: Path, log: Path, *args: str, level: str = "info") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--config", str(config),
         "--log-level", level, *args],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL,
    )
    _started.append(proc)
    return proc


def notes(zendesk: ZendeskSimulator) -> Counter[int]:
    return Counter(n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id))


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    uppzy.answer_time = (0.05, 0.6)
    rng = random.Random(7)
    customers = [zendesk.add_user(f"C{i}", "end-user", f"c{i}@example.org") for i in range(200)]
    owner = {zendesk.create_ticket(c, f"Question {i}"): c for i, c in enumerate(customers)}
    tickets = list(owner)
    config = config_file(engine={"tick": "0.1s", "workers": 8})
    log = tmp_path / "daemon.log"
    for round_no in range(5):
        proc = start_daemon(config, log)
        time.sleep(rng.uniform(1.0, 3.0))
        proc.kill()
        proc.wait(timeout=10)
        # Customers keep writing while the daemon is down: new turns on some tickets.
        for tid in rng.sample(tickets, 5):
            zendesk.add_comment(tid, owner[tid], f"Follow-up {round_no}")
    last_customer = {
        tid: [c["id"] for c in zendesk.comments(tid) if c["author_id"] == owner[tid]][-1]
        for tid in tickets
    }
    db = sqlite3.connect(tmp_path / "connector.db")

    def latest_turns_posted() -> bool:
        rows = db.execute(
            "SELECT ticket_id, state, last_message_id FROM turn t WHERE id = "
            "(SELECT max(id) FROM turn WHERE ticket_id = t.ticket_id)").fetchall()
        done = {int(t): m for t, state, m in rows if state == "posted"}
        return all(done.get(t) == str(m) for t, m in last_customer.items())

    proc = start_daemon(config, log)
    try:
        wait_for(latest_turns_posted, 90, "every ticket's latest customer turn to be drafted")
        time.sleep(2)  # would any late duplicate appear?
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    turns = db.execute("SELECT ticket_id, state, reason, posted_id FROM turn").fetchall()
    posted = Counter(int(t) for t, state, _r, _p in turns if state == "posted")
    # Exactly one note per posted turn: nothing posted twice, nothing posted unrecorded.
    assert notes(zendesk) == posted
    assert len({p for *_, p in turns if p}) == sum(posted.values())
    # Every other turn ended for a recorded reason: superseded by a message that followed it.
    others = {(state, reason) for _t, state, reason, _p in turns if state != "posted"}
    assert others <= {("cancelled", "superseded by a newer customer message")}
    assert uppzy.max_concurrent_per_session <= 1


def test_restart_after_sigkill_resumes_within_ten_seconds(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    uppzy.answer_time = 2.0
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Will you survive a kill?")
    config = config_file()
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    db = sqlite3.connect(tmp_path / "connector.db")

    def asked_and_recorded() -> bool:
        try:
            return db.execute("SELECT count(*) FROM turn WHERE state = 'submitted'"
                              ).fetchone()[0] == 1
        except sqlite3.OperationalError:  # not migrated yet
            return False

    wait_for(asked_and_recorded, 20, "the question to be asked and recorded")
    proc.kill()
    proc.wait(timeout=10)
    restarted = time.monotonic()
    proc = start_daemon(config, log)
    try:
        wait_for(lambda: notes(zendesk)[tid] == 1, 10, "the draft after restart")
        assert time.monotonic() - restarted < 10
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert uppzy.call_count("chat_async") == 1  # the request in flight was picked up, not re-asked


def test_sigterm_during_a_busy_run_exits_zero_quickly(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    uppzy.answer_time = (0.5, 3.0)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    for i in range(60):
        zendesk.create_ticket(customer, f"Busy {i}")
    config = config_file()
    proc = start_daemon(config, tmp_path / "daemon.log")
    wait_for(lambda: uppzy.call_count("chat_async") >= 10, 30, "work in flight")
    started = time.monotonic()
    assert stop(proc, signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 10


def test_sigterm_while_sync_chats_wait_exits_and_the_questions_are_asked_again(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    """Sync chats wait on threads of their own: a stop must not wait for their answers, and
    the questions they carried are asked again after the restart, each drafted once."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first = zendesk.create_ticket(customer, "Sync first")  # its answer verifies the key
    config = config_file(uppzy={"mode": "sync", "answer_timeout": "90s"})
    proc = start_daemon(config, tmp_path / "daemon.log")
    wait_for(lambda: notes(zendesk)[first] == 1, 30, "the first draft")
    uppzy.sync_latency = 60.0
    tickets = [zendesk.create_ticket(customer, f"Sync {i}") for i in range(10)]
    wait_for(lambda: len(uppzy.requests_for()) >= 11, 30, "sync chats waiting")
    assert stop(proc, signal.SIGTERM, timeout=15) == 0
    assert sum(notes(zendesk).values()) == 1
    uppzy.sync_latency = 0.0
    proc = start_daemon(config, tmp_path / "daemon2.log")
    wait_for(lambda: all(notes(zendesk)[t] == 1 for t in tickets), 60, "every ticket drafted")
    assert stop(proc, signal.SIGTERM) == 0
    assert max(notes(zendesk).values()) == 1


def test_rejected_api_key_stops_with_exit_3_and_no_retry_storm(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    for i in range(20):
        zendesk.create_ticket(customer, f"Q{i}")
    config = config_file(uppzy={"api_key": "revoked-key-123"})
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    assert proc.wait(timeout=30) == 3
    text = log.read_text()
    assert "API key" in text and "revoked-key-123" not in text
    assert uppzy.call_count() <= 2


def test_plan_without_m2m_stops_at_start_with_exit_3(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    uppzy.api_keys["basic-plan-key"] = "no_plan"
    config = config_file(uppzy={"api_key": "basic-plan-key", "tenant_id": "tenant-1"})
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run", "--once", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3
    assert "plan" in proc.stderr
    assert uppzy.call_count() == 1


def test_uppzy_429_and_5xx_bursts_are_waited_out(
    make_engine: Callable[..., Runtime], zendesk: ZendeskSimulator, uppzy: UppzySimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = [zendesk.create_ticket(customer, f"Q{i}") for i in range(12)]
    uppzy.add_fault(Fault(endpoint="chat_async", status=429, retry_after=1.5, times=4,
                          body={"error": "too many requests"}))
    uppzy.add_fault(Fault(endpoint="chat_status", status=503, body="", times=8))
    engine = make_engine()
    assert engine.run_once()
    assert notes(zendesk) == Counter(dict.fromkeys(tickets, 1))
    calls = sorted(uppzy.calls, key=lambda c: c.at)
    for i, call in enumerate(calls):
        if call.status == 429:
            later = [c for c in calls[i + 1:] if c.endpoint.startswith("chat")]
            assert later and later[0].at >= call.at + 1.5 - 0.02, "called before Retry-After"
    assert sum(c.status == 503 for c in calls) == 8


def test_debug_logs_and_status_never_show_secrets(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    zendesk.create_ticket(customer, "Secret-free please")
    uppzy.add_fault(Fault(endpoint="chat_async", status=500,
                          body={"error": f"echo X-API-Key: {API_KEY}"}, times=1))
    env = {**os.environ, "UPPZY_KEY_ENV": API_KEY}
    config = config_file(uppzy={"api_key": "${UPPZY_KEY_ENV}"})
    run = subprocess.run(
        [sys.executable, "-m", "connector", "run", "--once", "--config", str(config),
         "--log-level", "debug"], capture_output=True, text=True, timeout=120, env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "DEBUG" in run.stderr and len(run.stderr.splitlines()) > 10
    assert "echo X-API-Key: ***" in run.stderr  # the echoed key was logged, masked
    outputs = [run.stdout, run.stderr]
    for args in (["status"], ["status", "--json"]):
        status = subprocess.run(
            [sys.executable, "-m", "connector", *args, "--config", str(config)],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert status.returncode == 0, status.stderr
        outputs += [status.stdout, status.stderr]
    report = json.loads(outputs[-2])
    assert report["adapters"][0]["turns"]["posted"] == 1
    for text in outputs:
        assert API_KEY not in text
        assert ZD_TOKEN not in text
    assert "Secret-free please" not in "".join(
        line for line in run.stderr.splitlines(keepends=True) if " DEBUG " not in line
    )


@pytest.mark.parametrize("command", [["check"], ["run", "--once"]])
def test_bad_log_level_is_a_usage_error(command: list[str], config_file):
    proc = subprocess.run(
        [sys.executable, "-m", "connector", *command, "--config", str(config_file()),
         "--log-level", "loud"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2


def test_a_second_instance_on_the_same_sqlite_file_is_refused(
    config_file, zendesk: ZendeskSimulator, uppzy: UppzySimulator, tmp_path: Path
):
    config = config_file()
    first = start_daemon(config, tmp_path / "first.log")
    try:
        wait_for(lambda: (tmp_path / "connector.db.lock").exists(), 20, "the first instance")
        time.sleep(0.5)
        second = subprocess.run(
            [sys.executable, "-m", "connector", "run", "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 2
        assert "SQLite supports one instance" in second.stderr
        assert "PostgreSQL" in second.stderr
    finally:
        assert stop(first) == 0
