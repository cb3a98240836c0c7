"""Draft adoption end to end: the daemon (a real process) against the Zendesk and Uppzy
simulators over HTTP, agents answering after the drafts, a restart in the middle; then what
``status --json``, ``report`` and Uppzy's feedback records say."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import config_dict, in_ci, wait_for

from adapters.zendesk.simulator import ZendeskSimulator
from connector.testing.uppzy_sim import UppzySimulator

QUESTION = "Question {n}: how do I move my whole team to the yearly plan without losing data?"
GREETING = "Hi there, thanks a lot for your patience while we looked into this for you today."
UNRELATED = "We have passed this to our billing team, who will write to you by Friday."
SCORES = {"used": 0.92, "edited": 0.75, "discarded": 0.55, "silent": 0.85, "tagged": 0.55}
COUNTS = {"used": 15, "edited": 10, "discarded": 10, "silent": 5, "tagged": 3}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def adoption(config: Path) -> dict[str, int]:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["adapters"][0]["adoption"]


@pytest.fixture
def daemon(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "daemon.log").open("ab"))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_adoption_counts_and_implicit_feedback_survive_a_restart(
    tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator, daemon
) -> None:
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    group_of: dict[int, str] = {}
    n = 0
    for group, count in COUNTS.items():
        for _ in range(count):
            customer = zendesk.add_user(f"C{n}", "end-user", f"c{n}@example.org")
            group_of[zendesk.create_ticket(customer, QUESTION.format(n=n))] = group
            n += 1
    uppzy.confidence = lambda session_id, _m: ("high", SCORES[group_of[int(
        session_id.split("-")[1])]])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(
        tmp_path, uppzy, zendesk, feedback={"implicit": True, "implicit_delay": "2s"})))
    proc = daemon(config)
    wait_for(lambda: len({c["ticket_id"] for c in zendesk.notes_by(zendesk.bot_user_id)})
             == len(group_of), 90, "a draft on every ticket")
    answer = {t: uppzy.requests_for(f"zd-{t}")[0]["answer"] for t in group_of}

    def reply(ticket: int) -> None:
        group = group_of[ticket]
        if group == "tagged":
            zendesk.add_tags(ticket, "ai_good")  # the agent rates it, then writes their own
        text = {"used": answer[ticket], "edited": f"{GREETING}\n{answer[ticket]}"}.get(
            group, UNRELATED)
        zendesk.add_comment(ticket, agent, text, public=True)

    answered = [t for t in group_of if group_of[t] != "silent"]
    first, second = answered[::2], answered[1::2]
    for ticket in first:
        reply(ticket)
    wait_for(lambda: sum(adoption(config)[k] for k in ("used", "edited", "discarded"))
             == len(first), 60, "verdicts on the first half")
    before = adoption(config)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert adoption(config) == before  # a stop changes no count
    daemon(config)
    for ticket in second:
        reply(ticket)
    expected = {"used": 15, "edited": 10, "discarded": 13, "pending": 5, "expired": 0}
    wait_for(lambda: adoption(config) == expected, 60, "every verdict")
    wait_for(lambda: len(uppzy.feedback_recorded()) == 28, 30, "28 ratings")
    time.sleep(3.0)  # room for a late duplicate or a late implicit rating to show

    requests = {r["session_id"]: r for r in uppzy.requests_for()}
    given = {t: requests[f"zd-{t}"]["feedback"] for t in group_of}
    calls = {t: requests[f"zd-{t}"]["feedback_calls"] for t in group_of}
    want = {"used": "good", "discarded": "bad", "tagged": "good", "edited": None, "silent": None}
    assert given == {t: want[g] for t, g in group_of.items()}
    assert calls == {t: int(want[g] is not None) for t, g in group_of.items()}
    assert adoption(config) == expected

    report_page = tmp_path / "report.html"
    result = cli(config, "report", "--format", "json", "--html", str(report_page))
    assert result.returncode == 0, result.stderr
    overall = json.loads(result.stdout)["overall"]
    assert overall["adoption"] == expected and overall["drafts_posted"] == 43
    assert overall["suggested_min_confidence"]["value"] == 0.6
    assert "0.5-0.6: 13 of 13 decided drafts discarded (100%)" in \
        overall["suggested_min_confidence"]["arithmetic"]
    _opens_in_chromium(report_page, tmp_path)


def _opens_in_chromium(page: Path, tmp_path: Path) -> None:
    """The page renders in headless Chromium: its DOM has both charts, and a screenshot is
    written next to the test's other files (not committed)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if in_ci():
            pytest.fail("chromium is not installed (scripts/test.sh installs it)")
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'c'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == 2 and "min_confidence: 0.6" in dom
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1000,900",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 1000
