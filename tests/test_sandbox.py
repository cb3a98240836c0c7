"""``connector demo`` and ``connector sandbox``: what a new user sees in the first hour."""

from __future__ import annotations

import logging
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from adapters.base import Role
from adapters.registry import adapter_class
from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import SandboxError
from connector.testing.demo import Demo, _print_draft
from connector.testing.sandbox import (
    SIMULATOR_OPTIONS,
    load_simulator,
    simulator_types,
    ticket_action,
)
from connector.testing.uppzy_sim import UppzySimulator


def _console() -> tuple[Console, StringIO]:
    buffer = StringIO()
    return Console(file=buffer, width=200, color_system=None), buffer


def test_demo_returns_only_when_its_jobs_are_done_and_prints_tables(caplog):
    """The first Zendesk call hangs longer than the demo runs, so a poll is in flight when the
    demo ends: the demo must wait for it before removing its database (a poll that wrote after
    that crashed it with "unable to open database file")."""
    demo = Demo()
    demo.zendesk.add_fault(Fault(kind="delay", endpoint="", delay=4.0, times=1))
    before = set(threading.enumerate())
    console, buffer = _console()
    with caplog.at_level(logging.WARNING):
        assert demo.run(1.0, console) == 0
    scheduler_jobs = [t for t in threading.enumerate()
                      if t not in before and t.name.startswith("ThreadPoolExecutor")]
    assert scheduler_jobs == []
    assert demo.zendesk.call_count() >= 1  # the hung call was answered before the demo ended
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    text = buffer.getvalue()
    for title in ("what the daemon did", "feedback sent to Uppzy",
                  "Uppzy calls"):
        assert title in text
    assert "{'" not in text and '{"' not in text  # no Python dicts printed


def test_demo_shows_a_posted_draft_as_the_agent_sees_it():
    with ZendeskSimulator(exclude_newest=0) as zendesk:
        customer = zendesk.add_user("Dana", "end-user", "dana@example.org")
        first = zendesk.create_ticket(customer, "Do you ship to Norway?")
        second = zendesk.create_ticket(customer, "Where are my invoices?")
        zendesk.add_comment(second, zendesk.bot_user_id, "Under Billing.", public=False)
        zendesk.add_comment(first, zendesk.bot_user_id, "Yes, within 5 days.", public=False)
        console, buffer = _console()
        _print_draft(console, zendesk, zendesk.notes_by(zendesk.bot_user_id))
    text = buffer.getvalue()
    assert f"ticket {first}: the customer wrote" in text
    assert "Do you ship to Norway?" in text
    assert "internal note (private, agents only)" in text
    assert "Yes, within 5 days." in text
    assert "Under Billing." not in text  # one draft, not all of them


# ----- the sandbox ---------------------------------------------------------------------------
HELPDESKS = simulator_types()


@pytest.mark.parametrize("helpdesk, path", HELPDESKS, ids=[h for h, _p in HELPDESKS])
def test_play_actions_over_http_are_read_by_the_adapter_as_customer_and_agent(helpdesk, path):
    """The control routes every helpdesk simulator gets from the base: what they create is
    what the real adapter reads as a customer's question, follow-up, agent reply, resolution."""
    with load_simulator(path)(**SIMULATOR_OPTIONS.get(helpdesk, {})) as sim:
        created = ticket_action(sim.url, helpdesk, "tickets",
                                {"body": "Do you ship to Norway?", "customer": "Ana Silva"})
        tid = created["ticket_id"]
        assert created["helpdesk"] == helpdesk
        ticket_action(sim.url, helpdesk, f"tickets/{tid}/customer_reply",
                      {"body": "And to Iceland?"})
        ticket_action(sim.url, helpdesk, f"tickets/{tid}/agent_reply", {"body": "Yes, both."})
        cls = adapter_class(helpdesk)
        adapter = cls(cls.settings_model.model_validate(
            {"name": "play", "type": helpdesk, **sim.adapter_config()}))
        try:
            ticket = adapter.get_ticket(str(tid))
            seen = [(m.role, m.public, m.body) for m in adapter.list_messages(ticket)]
            assert not ticket.resolved
            ticket_action(sim.url, helpdesk, f"tickets/{tid}/resolve", {})
            assert adapter.get_ticket(str(tid)).resolved
        finally:
            adapter.close()
    assert seen == [(Role.CUSTOMER, True, "Do you ship to Norway?"),
                    (Role.CUSTOMER, True, "And to Iceland?"),
                    (Role.AGENT, True, "Yes, both.")]


def test_play_routes_refuse_the_wrong_helpdesk_a_missing_ticket_and_a_bad_body():
    with ZendeskSimulator(exclude_newest=0) as zendesk:
        with pytest.raises(SandboxError, match="this is the zendesk simulator, not zammad's"):
            ticket_action(zendesk.url, "zammad", "tickets", {"body": "Hello?"})
        assert zendesk.state()["tickets"] == []  # refused before acting
        with pytest.raises(SandboxError, match="no such ticket"):
            ticket_action(zendesk.url, "zendesk", "tickets/999/resolve", {})
        with pytest.raises(SandboxError, match=re.escape('send {"body"')):
            ticket_action(zendesk.url, None, "tickets", {"subject": "no body"})
    with UppzySimulator() as uppzy, pytest.raises(SandboxError, match="has no tickets"):
        ticket_action(uppzy.url, None, "tickets", {"body": "Hello?"})


def test_busy_port_names_it_and_suggests_another(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "connector", "sandbox", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert f"port {port} (the uppzy simulator) is already in use" in result.stderr
    assert "--port N" in result.stderr and "--port 0" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _start(args: list[str], cwd: Path, started: list[subprocess.Popen[str]]
           ) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "connector", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    started.append(proc)
    return proc


def _sandbox_output(proc: subprocess.Popen[str]) -> str:
    """What the sandbox printed up to its last line (bounded: it prints a few dozen lines)."""
    lines: list[str] = []
    assert proc.stdout is not None
    for _ in range(500):
        line = proc.stdout.readline()
        lines.append(line)
        if not line or line.startswith("Faults:"):
            break
    return "".join(lines)


def _posted(db: Path) -> Counter[str]:
    if not db.exists():
        return Counter()
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT adapter, ticket_id FROM turn WHERE state = 'posted'")
            return Counter(adapter for adapter, _ticket in rows)
        except sqlite3.OperationalError:  # not migrated yet
            return Counter()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in reversed(started):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_sandbox_then_run_drafts_the_seeded_tickets_and_a_new_one(tmp_path: Path, processes):
    """The acceptance path: `connector sandbox`, its printed config saved, `connector run`:
    drafts appear on every seeded ticket of every helpdesk with no other step; a ticket added
    with `connector sandbox ticket new` gets one too."""
    sandbox = _start(["sandbox", "--port", "0", "--seed", "2"], tmp_path, processes)
    printed = _sandbox_output(sandbox)
    config = printed.split("(save as sandbox.yaml):\n", 1)[1].split("Faults:", 1)[0]
    (tmp_path / "sandbox.yaml").write_text(config)
    adapters = [a["name"] for a in yaml.safe_load(config)["adapters"]]
    assert len(adapters) == len(HELPDESKS)
    db = tmp_path / yaml.safe_load(config)["database"]["url"].removeprefix("sqlite:///")
    _start(["run", "--config", "sandbox.yaml"], tmp_path, processes)
    _wait_for(lambda: _posted(db) == Counter({name: 2 for name in adapters}),
              "a draft on each seeded ticket")

    new = re.search(r"^(connector sandbox ticket new --url \S+) ", printed, re.M)
    assert new is not None, printed
    command = [*shlex.split(new.group(1))[1:], "Can I pay by bank transfer?"]
    added = subprocess.run([sys.executable, "-m", "connector", *command], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert re.match(r"\w+: created ticket \d+", added.stdout)
    first = adapters[0]
    _wait_for(lambda: _posted(db)[first] == 3, "a draft on the ticket added by command")
    sandbox.terminate()
    assert sandbox.wait(timeout=15) == 0
