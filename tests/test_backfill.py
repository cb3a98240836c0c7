"""Backfill: tickets that waited before the first poll get exactly one draft, nothing else does.

The acceptance run is a real process interrupted by SIGINT and run again; the other tests call
the engine in-process. Every ticket here is created before the live poller's first poll (its
``start_from`` is 0), so for live polling all of it is history.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from rt_fixture import AGENT, RTServer
from sqlmodel import Session
from support import config_dict

from adapters.base import Adapter
from adapters.rt import RTAdapter, RTSettings
from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import Config, parse_config
from connector.core.errors import BackfillError
from connector.engine.backfill import run_backfill, supports_backfill
from connector.engine.backfill_request import Window, make_window, parse_when, waiting_message
from connector.engine.runtime import Runtime
from connector.store.db import make_engine
from connector.store.models import AdapterState
from connector.testing.uppzy_sim import UppzySimulator

LEGACY_NOTE = "Earlier answer.\n\n— AI draft, Uppzy ref req_legacy"


def seed(zendesk: ZendeskSimulator, count: int) -> tuple[set[int], set[int]]:
    """``count`` tickets of every shape that matters; returns (eligible, ineligible) ids."""
    agent = zendesk.add_user("Agent", "agent", "agent@example.com")
    eligible: set[int] = set()
    ineligible: set[int] = set()
    follow_ups: list[tuple[int, int]] = []
    for i in range(count):
        customer = zendesk.add_user(f"C{i}", "end-user", f"c{i}@example.org")
        tid = zendesk.create_ticket(customer, f"Question {i}?")
        kind = i % 10
        waits = True
        if kind == 0:  # a human answered
            zendesk.add_comment(tid, agent, "Answered by a human.")
            waits = False
        elif kind == 1:  # solved
            zendesk.set_status(tid, "solved")
            waits = False
        elif kind == 2:  # an earlier version of us already drafted it
            zendesk.add_comment(tid, zendesk.bot_user_id, LEGACY_NOTE, public=False)
            waits = False
        elif kind == 3:  # answered, then the customer wrote again (below)
            zendesk.add_comment(tid, agent, "Try turning it off and on.")
            follow_ups.append((tid, customer))
        elif kind == 4:  # an internal note answers nobody
            zendesk.add_comment(tid, agent, "Internal: VIP.", public=False)
        elif kind == 5:  # nor does a trigger's public message
            zendesk.add_comment(tid, agent, "We got your request.", via_channel="rule")
        elif kind == 6:  # pending on the customer after an agent reply
            zendesk.add_comment(tid, agent, "Can you send a screenshot?")
            zendesk.set_status(tid, "pending")
            waits = False
        (eligible if waits else ineligible).add(tid)
    if follow_ups:
        # Helpdesk times have whole seconds, and the engine cancels a turn when an agent reply
        # carries the same second as the customer's message.
        time.sleep(1.05)
    for tid, customer in follow_ups:
        zendesk.add_comment(tid, customer, "Did that, still broken.")
    return eligible, ineligible


def our_notes(zendesk: ZendeskSimulator) -> Counter[int]:
    """Notes the connector wrote (the seeded legacy drafts are not counted)."""
    return Counter(n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id)
                   if n["body"] != LEGACY_NOTE)


def live_first_pass(config: Config) -> str | None:
    """What the daemon's first pass does: take a cursor and read what the feed reports; with
    ``start_from: 0`` all of it is history. Returns the live cursor."""
    engine = Runtime(config)
    engine.start()
    try:
        assert engine.run_once()
    finally:
        engine.shutdown(grace=2)
        engine.db.dispose()
    return cursor_of(config)


def cursor_of(config: Config) -> str | None:
    path = config.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT cursor FROM adapter_state WHERE adapter = 'zd'").fetchone()
    return row[0] if row else None


def dump(path: Path) -> list[str]:
    """Every row of every table, to tell whether anything at all was written."""
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def since_an_hour_ago() -> Window:
    return Window(datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture
def history_config(make_config: Callable[..., Config]) -> Callable[..., Config]:
    def build(adapter: dict[str, object] | None = None, **overrides: object) -> Config:
        return make_config(adapter={"start_from": "0s", **(adapter or {})}, **overrides)
    return build


# ----- the acceptance run: 300 tickets, a dry run, SIGINT, a rerun ---------------------------
def test_interrupted_backfill_resumes_and_drafts_every_waiting_ticket_once(
    tmp_path: Path, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
):
    uppzy.sync_latency = 0.1  # sync chat holds a worker: a steady pace to interrupt
    eligible, ineligible = seed(zendesk, 300)
    data = config_dict(tmp_path, uppzy, zendesk, adapter={"start_from": "0s"},
                       uppzy={"mode": "sync"}, engine={"workers": 6})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = parse_config(data)
    cursor = live_first_pass(config)
    assert cursor and not our_notes(zendesk) and not uppzy.calls  # all of it was history
    db_path = tmp_path / "connector.db"
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    args = [sys.executable, "-m", "connector", "backfill", "--config", str(config_path),
            "--adapter", "zd", "--since", since]

    before = dump(db_path)
    dry = subprocess.run([*args, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    listed = {int(line.split()[2]) for line in dry.stdout.splitlines()
              if line.startswith("would queue")}
    assert listed == eligible
    assert dump(db_path) == before
    assert not our_notes(zendesk) and not uppzy.calls

    log = (tmp_path / "backfill.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while sum(our_notes(zendesk).values()) < 30 and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "backfill.log").read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130, (tmp_path / "backfill.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert 30 <= sum(our_notes(zendesk).values()) < len(eligible)  # stopped half way
    # Written to a file, not a terminal: progress still shows while it runs, line by line.
    assert re.search(r"^(listing|drafting): found \d+ +queued \d+",
                     (tmp_path / "backfill.log").read_text(), re.MULTILINE)

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert our_notes(zendesk) == Counter(dict.fromkeys(eligible, 1))
    assert not set(our_notes(zendesk)) & ineligible
    assert uppzy.max_concurrent_per_session <= 1
    assert cursor_of(config) == cursor
    with sqlite3.connect(db_path) as db:
        outcomes = dict(db.execute("SELECT outcome, count(*) FROM backfill_item GROUP BY outcome"))
        questions = db.execute("SELECT count(*) FROM turn").fetchone()[0]
    assert outcomes == {"drafted": len(eligible), "skipped": len(ineligible)}
    assert questions == len(eligible)  # nothing was asked twice

    # A third run finds nothing left to do and asks nobody.
    calls = len(uppzy.calls)
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert "queued 0" in again.stdout and len(uppzy.calls) == calls


# ----- in-process: limits, fresh databases, what counts as waiting ---------------------------
def test_limit_caps_each_run_and_a_fresh_database_gets_no_live_cursor(
    history_config: Callable[..., Config], zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    tmp_path: Path,
):
    eligible, _ = seed(zendesk, 20)
    config = history_config()

    dry = run_backfill(config, "zd", since_an_hour_ago(), dry_run=True, limit=3)
    assert len(dry.would_queue) == 3
    assert not (tmp_path / "connector.db").exists()  # not even an empty database file

    first = run_backfill(config, "zd", since_an_hour_ago(), limit=5)
    assert (first.progress.queued, first.progress.drafted) == (5, 5)
    assert sum(our_notes(zendesk).values()) == 5
    rest = run_backfill(config, "zd", since_an_hour_ago())
    assert rest.progress.queued == len(eligible) - 5 and not rest.interrupted
    assert our_notes(zendesk) == Counter(dict.fromkeys(eligible, 1))
    assert rest.reasons["done by an earlier run"] == 5
    db_engine = make_engine(config.database.url)
    with Session(db_engine) as db:
        assert db.get(AdapterState, "zd") is None  # the live poller starts from scratch
    db_engine.dispose()


def test_a_ticket_the_daemon_already_answered_is_left_alone(
    history_config: Callable[..., Config], zendesk: ZendeskSimulator, uppzy: UppzySimulator,
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    config = history_config()
    old = zendesk.create_ticket(customer, "Before the daemon")
    live_first_pass(config)
    time.sleep(1.1)  # helpdesk times have whole seconds: be clearly after the first poll
    new = zendesk.create_ticket(customer, "After the daemon started")
    live_first_pass(config)  # the daemon drafts the new one itself
    assert our_notes(zendesk) == Counter({new: 1})

    result = run_backfill(config, "zd", since_an_hour_ago())
    assert our_notes(zendesk) == Counter({new: 1, old: 1})
    assert result.reasons == Counter({"already drafted": 1})

    # The customer writes again on the backfilled ticket: the live poller takes it from here.
    zendesk.add_comment(old, customer, "Thanks, one more question")
    live_first_pass(config)
    assert our_notes(zendesk)[old] == 2
    assert uppzy.questions(f"zd-{old}") == ["Before the daemon", "Thanks, one more question"]


def test_rate_limited_helpdesk_is_waited_out(
    history_config: Callable[..., Config], zendesk: ZendeskSimulator, uppzy: UppzySimulator,
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = {zendesk.create_ticket(customer, f"Q{i}") for i in range(4)}
    # Longer than the HTTP client waits inline, so backfill itself must wait it out.
    zendesk.add_fault(Fault(endpoint="ticket_comments", status=429, retry_after=6,
                            body={"error": "APIRateLimitExceeded"}, times=1))
    result = run_backfill(history_config(), "zd", since_an_hour_ago())
    assert our_notes(zendesk) == Counter(dict.fromkeys(tickets, 1))
    assert not result.progress.failed
    calls = sorted(zendesk.calls, key=lambda c: c.at)
    for i, call in enumerate(calls):
        if call.status == 429:
            later = [c for c in calls[i + 1:] if c.endpoint == call.endpoint]
            assert later[0].at >= call.at + 6 - 0.05, "called again before Retry-After"


def test_waiting_message_rules():
    from adapters.base import Message, Role

    def msg(i: int, role: Role, public: bool = True, body: str = "text") -> Message:
        return Message(str(i), "1", datetime(2024, 1, 1, 0, 0, i, tzinfo=UTC), role, public, body)

    customer, agent, system = Role.CUSTOMER, Role.AGENT, Role.SYSTEM
    assert waiting_message([msg(1, customer), msg(2, agent, public=False), msg(3, system)],
                           set())[0] == msg(1, customer)
    assert waiting_message([msg(1, customer), msg(2, agent)], set()) == (
        None, "answered by an agent")
    assert waiting_message([msg(1, customer), msg(2, agent, public=False)], {"2"}) == (
        None, "already drafted")
    assert waiting_message([msg(1, agent, public=False, body="AI draft, Uppzy ref r1"),
                            msg(2, customer)], set())[0] == msg(2, customer)
    assert waiting_message([msg(1, system)], set()) == (None, "no public customer message")


# ----- dates and usage errors ------------------------------------------------------------------
def test_dates_are_iso_dates_or_datetimes_in_utc():
    assert parse_when("2024-05-01", option="--since") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-31", option="--until", end_of_day=True) == datetime(
        2024, 5, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_when("2024-05-01T10:00:00+02:00", option="--since") == datetime(
        2024, 5, 1, 8, tzinfo=UTC)
    assert parse_when("2024-05-01T08:00", option="--since") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    now = datetime(2024, 5, 8, 12, tzinfo=UTC)
    assert parse_when("7d", option="--since", now=now) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert make_window("36h", "12h", now=now).since == datetime(2024, 5, 7, tzinfo=UTC)
    with pytest.raises(BackfillError, match=r"--since: '01/05/2024' is not an ISO date"):
        parse_when("01/05/2024", option="--since")
    with pytest.raises(BackfillError, match=r"--until.*not after"):
        make_window("2024-05-02", "2024-05-01")
    with pytest.raises(BackfillError, match="future"):
        make_window((datetime.now(UTC) + timedelta(days=1)).date().isoformat(), None)


def test_usage_errors_exit_2_before_any_remote_call(
    config_file: Callable[..., Path], zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    make_engine: Callable[..., Runtime],
):
    config = str(config_file())

    def backfill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "connector", "backfill", "--config", config,
                               *args], capture_output=True, text=True, timeout=60)

    bad_date = backfill("--adapter", "zd", "--since", "last tuesday")
    assert bad_date.returncode == 2 and "--since" in bad_date.stderr
    unknown = backfill("--adapter", "nope", "--since", "2024-01-01")
    assert unknown.returncode == 2 and "no adapter named 'nope'" in unknown.stderr
    assert not zendesk.calls and not uppzy.calls
    make_engine()  # a daemon holds the SQLite file
    busy = backfill("--adapter", "zd", "--since", "2024-01-01")
    assert busy.returncode == 2 and "already used" in busy.stderr


def test_helpdesk_refusing_the_credentials_ends_the_run(
    history_config: Callable[..., Config], zendesk: ZendeskSimulator, uppzy: UppzySimulator,
):
    zendesk.create_ticket(zendesk.add_user("C", "end-user", "c@example.org"), "Hello?")
    config = history_config(adapter={"auth": {"email": "bot@example.com", "api_token": "bad"}})
    result = run_backfill(config, "zd", since_an_hour_ago())
    assert result.fatal is not None and "refused" in result.fatal
    assert result.progress.found == 0 and not uppzy.calls


def test_only_adapters_with_a_listing_support_backfill():
    assert not supports_backfill(Adapter)  # type: ignore[type-abstract]
    assert supports_backfill(RTAdapter)


# ----- Request Tracker's listing ---------------------------------------------------------------
def test_rt_lists_tickets_changed_in_the_window_by_queue(rt_server: RTServer):
    adapter = RTAdapter(RTSettings.model_validate({
        "name": "rt", "type": "rt", "url": rt_server.url, "auth": {"token": rt_server.agent_token},
        "queues": ["Support"],
    }))
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        mark = f"backfill-{time.time_ns()}"
        # Sales first: tests/test_rt_adapter.py expects the newest transaction in Support.
        sales = rt_server.create_ticket(f"{mark} sales", "Other queue.", user=AGENT,
                                        queue="Sales")
        support = {rt_server.create_ticket(f"{mark} {i}", "Still waiting.") for i in range(3)}

        def listed(since: datetime, until: datetime | None) -> list[str]:
            return [t.external_id for page in adapter.list_tickets(since, until) for t in page]

        found = listed(start, None)
        assert support <= set(found) and sales not in found and len(found) == len(set(found))
        assert found == sorted(found, key=int)
        assert not support & set(listed(start - timedelta(days=1), start - timedelta(hours=1)))
    finally:
        adapter.close()
