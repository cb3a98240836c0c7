"""Faults that need PostgreSQL: a database cut mid-step, lengths it enforces, several instances.

Engines run in-process against the real server (a fresh schema per test, see ``pg_url``), the
simulators over real HTTP; the database cut goes through a TCP proxy that resets every
connection, as a failover or a network blip does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from support import claim_reads, wait_for
from test_faults import FAST, drive
from test_pipeline import notes_per_ticket, turns
from test_postgres import (  # noqa: F401  (pg_url: a fixture)
    pg_config,
    pg_url,
    start,
    stop_gracefully,
    write_config,
)

from adapters.base import Ticket
from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import parse_config
from connector.daemon import launch
from connector.engine import conversation, ingest
from connector.engine.runtime import Runtime
from connector.store import claims, tickets
from connector.store.db import session_scope
from connector.store.models import AdapterState, utcnow
from connector.testing.tcp_proxy import TcpProxy
from connector.testing.uppzy_sim import UppzySimulator


@pytest.fixture
def engines(tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
            ) -> Iterator[Callable[..., Runtime]]:
    built: list[Runtime] = []

    def build(url: str, instance: str, **overrides) -> Runtime:
        data = pg_config(tmp_path, uppzy, zendesk, url, **overrides)
        data["engine"] = {**data["engine"], **FAST, "instance_id": instance,
                          **overrides.get("engine", {})}
        engine = Runtime(parse_config(data))
        engine.start()
        built.append(engine)
        return engine

    yield build
    for engine in built:
        engine.shutdown(grace=2)
        engine.db.dispose()


def test_a_database_cut_mid_step_leaves_no_turn_stuck(
    pg_url: str, engines, zendesk: ZendeskSimulator, uppzy: UppzySimulator  # noqa: F811
):
    """The connection is reset while four steps wait on Uppzy: their outcome writes and their
    claim releases fail. The claims must expire (not be renewed for dead steps) and every
    ticket must be drafted once the database is back."""
    host, _, rest = pg_url.partition("@")[2].partition(":")
    port = int(rest.split("/")[0])
    proxy = TcpProxy(host, port).start()
    try:
        url = pg_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
        customer = zendesk.add_user("C", "end-user", "c@example.org")
        engine = engines(url, "blip")
        first = zendesk.create_ticket(customer, "First?")  # its answer proves the Uppzy key
        drive(engine, lambda: notes_per_ticket(zendesk)[first] == 1)
        uppzy.add_fault(Fault(kind="delay", endpoint="chat_async", delay=2.0, times=4))
        tickets = [zendesk.create_ticket(customer, f"Q{i}?") for i in range(4)]
        drive(engine, lambda: sum(1 for t in turns(engine)
                                  if t.claim_owner and t.state == "queued") == 4)
        time.sleep(0.5)  # the four submits are on the wire
        proxy.cut()
        time.sleep(3.0)
        proxy.restore()
        drive(engine, lambda: notes_per_ticket(zendesk) == Counter(
            {first: 1, **dict.fromkeys(tickets, 1)}), timeout=40)
    finally:
        proxy.stop()


def test_a_daemon_started_while_the_database_is_down_waits_for_it(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator,  # noqa: F811
):
    """The host boots before PostgreSQL, or a failover is under way: the daemon says so and
    waits, then works. Exiting 2 (a setting to fix) would never be restarted by the unit."""
    host, _, rest = pg_url.partition("@")[2].partition(":")
    port = int(rest.split("/")[0])
    proxy = TcpProxy(host, port).start()
    proxy.cut()
    url = pg_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    log = tmp_path / "daemon.log"
    proc = start(write_config(tmp_path, pg_config(tmp_path, uppzy, zendesk, url)), log, "late")
    try:
        wait_for(lambda: "waiting for the database" in log.read_text(), 20, "the wait")
        time.sleep(2.0)
        assert proc.poll() is None, log.read_text()
        assert "database.url: " in log.read_text() and "Traceback" not in log.read_text()
        tid = zendesk.create_ticket(zendesk.add_user("C", "end-user", "c@example.org"), "Q?")
        proxy.restore()
        wait_for(lambda: notes_per_ticket(zendesk)[tid] == 1, 90, "the draft, database back")
        assert stop_gracefully(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.stop()


def test_a_database_lost_during_the_start_is_waited_for(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
):
    """The database answered the first look, then went away while the daemon migrated (a
    restart during a failover): the start waits for it like a database silent from the first
    look. The soak caught it exiting 2 there, which the shipped unit does not restart."""
    host, _, rest = pg_url.partition("@")[2].partition(":")
    port = int(rest.split("/")[0])
    proxy = TcpProxy(host, port).start()
    url = pg_url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    config = parse_config(pg_config(tmp_path, uppzy, zendesk, url))
    looked = launch.inspect_database
    cuts: list[threading.Timer] = []

    def look_then_cut(url: str):
        state = looked(url)
        if not cuts:  # the first look succeeds; the start that follows meets the cut
            proxy.cut()
            cuts.append(threading.Timer(1.5, proxy.restore))
            cuts[0].start()
        return state

    monkeypatch.setattr(launch, "inspect_database", look_then_cut)
    try:
        with caplog.at_level(logging.WARNING, logger="connector"):
            runtime, ops = launch.start_when_the_database_answers(config, most=1.0)
        try:
            assert "waiting for the database" in caplog.text
            assert "database.url" in caplog.text
            tid = zendesk.create_ticket(zendesk.add_user("C", "end-user", "c@example.org"),
                                        "Q?")
            assert runtime.run_once()
            assert notes_per_ticket(zendesk)[tid] == 1
        finally:
            runtime.shutdown(grace=2)
            ops.stop()
    finally:
        for timer in cuts:
            timer.cancel()
        proxy.stop()


def test_a_restart_under_the_same_instance_id_takes_its_claims_back_at_once(
    pg_url: str, engines, zendesk: ZendeskSimulator, uppzy: UppzySimulator  # noqa: F811
):
    """A pod killed and restarted with its fixed ``instance_id``: what the dead run claimed
    must not wait for the lease (a minute here) to expire."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    first = engines(pg_url, "pod-a", engine={"lease_ttl": "60s"})
    first.poll("zd")
    reads = claim_reads(first, 10)
    for record in reads:
        conversation.sync_ticket(first, record)
    with session_scope(first.db) as db:  # a step under way when the pod was killed
        held = claims.claim_turns(db, "pod-a", utcnow(), first.lease_ttl, 10)
    assert len(held) == 1
    restarted = engines(pg_url, "pod-a", engine={"lease_ttl": "60s"})
    drive(restarted, lambda: notes_per_ticket(zendesk)[tid] >= 1, timeout=20)
    assert notes_per_ticket(zendesk)[tid] == 1


def test_vendor_strings_longer_than_their_columns_cost_nothing(
    pg_url: str, engines, zendesk: ZendeskSimulator, uppzy: UppzySimulator,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Secret customer words?", via_channel="x" * 80)
    with zendesk.lock:
        zendesk.tickets[tid].comments[0].id = int("9" * 141)
    other = zendesk.create_ticket(customer, "Plain question?")
    engine = engines(pg_url, "long")
    with caplog.at_level(logging.INFO):
        drive(engine, lambda: notes_per_ticket(zendesk) == Counter({tid: 1, other: 1}))
    assert all("Secret customer words" not in r.getMessage() for r in caplog.records
               if r.levelno >= logging.INFO)
    rows = {t.ticket_id: t.last_message_id for t in turns(engine)}
    assert rows[str(tid)].startswith("sha256:") and len(rows[str(tid)]) <= 128


def test_an_instance_standing_still_while_posting_is_not_doubled(
    pg_url: str, engines, zendesk: ZendeskSimulator, uppzy: UppzySimulator  # noqa: F811
):
    """Instance A's post is on the wire when A stops renewing its claim (a VM pause, a frozen
    process: here A simply gets no heartbeat). B may take the turn over only once A's post has
    surely landed or failed, and then finds it by its marker: one note, never two."""
    uppzy.answer_time = 0.05
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    zendesk.add_fault(Fault(kind="delay", endpoint="ticket_update", delay=5.0, times=1))
    adapter = {"timeout": "8s"}
    a = engines(pg_url, "a", adapter=adapter)
    b = engines(pg_url, "b", adapter=adapter)
    deadline = time.monotonic() + 20
    while not any(t.state == "posting" for t in turns(a)):  # A alone, and never a heartbeat
        assert time.monotonic() < deadline
        a.poll("zd")
        a.dispatch()
        time.sleep(0.05)
    stop = time.monotonic() + 20
    while time.monotonic() < stop:
        b.poll("zd")
        b.heartbeat()
        b.dispatch()
        time.sleep(0.1)
    assert notes_per_ticket(zendesk)[tid] == 1
    assert [t.state for t in turns(b)] == ["posted"]


def test_three_instances_close_each_session_and_send_each_feedback_once(
    pg_url: str, engines, zendesk: ZendeskSimulator, uppzy: UppzySimulator  # noqa: F811
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tickets = [zendesk.create_ticket(customer, f"Q{i}?") for i in range(20)]
    instances = [engines(pg_url, f"i{n}") for n in range(3)]
    drive(instances[0], lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1)))
    for tid in tickets:
        zendesk.add_tags(tid, "ai_good")
        zendesk.set_status(tid, "solved")
    done = threading.Event()

    def run(engine: Runtime) -> None:
        while not done.is_set():
            engine.poll("zd")
            engine.heartbeat()
            engine.dispatch()
            engine.housekeeping()
            time.sleep(0.01)

    threads = [threading.Thread(target=run, args=(e,), daemon=True) for e in instances]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 120  # generous: three engines share two cores
        while time.monotonic() < deadline and not (
            len(uppzy.closed_sessions()) == 20 and len(uppzy.feedback_recorded()) == 20
        ):
            time.sleep(0.2)
        time.sleep(2.0)  # room for a late duplicate to show
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=10)
    assert {uppzy.close_calls(f"zd-{t}") for t in tickets} == {1}
    assert uppzy.call_count("feedback") == 20


def test_three_daemons_one_killed_close_and_rate_each_solved_ticket_once(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator,  # noqa: F811
):
    """The acceptance run: three daemon processes on PostgreSQL, 150 tickets, one daemon
    killed mid-run and restarted, 20 tickets solved and rated: every session closed exactly
    once, every feedback sent once, every ticket drafted once."""
    uppzy.answer_time = (0.05, 0.5)
    customers = [zendesk.add_user(f"C{i}", "end-user", f"c{i}@example.org") for i in range(30)]
    tickets = [zendesk.create_ticket(customers[i % 30], f"Q{i}?") for i in range(150)]
    config = write_config(tmp_path, pg_config(tmp_path, uppzy, zendesk, pg_url))
    log = tmp_path / "instances.log"
    procs = {name: start(config, log, name) for name in ("p0", "p1", "p2")}
    try:
        wait_for(lambda: sum(notes_per_ticket(zendesk).values()) >= 50, 90, "drafts under way")
        procs["p1"].kill()
        procs["p1"].wait(timeout=10)
        # Solve tickets that already carry their draft: a ticket solved before its draft was
        # posted rightly gets none (its turn is cancelled), so it would never be rated.
        drafted = notes_per_ticket(zendesk)
        solved = [tid for tid in tickets if drafted[tid] == 1][:20]
        for tid in solved:
            zendesk.add_tags(tid, "ai_good")
            zendesk.set_status(tid, "solved")
        procs["p1"] = start(config, log, "p1")
        wait_for(lambda: notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1))
                 and len(uppzy.closed_sessions()) >= 20
                 and len(uppzy.feedback_recorded()) >= 20, 300, "drafts, closes and feedback")
        time.sleep(3.0)  # room for a late duplicate to show
        for proc in procs.values():
            assert stop_gracefully(proc) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert notes_per_ticket(zendesk) == Counter(dict.fromkeys(tickets, 1))
    assert len(solved) == 20
    assert {uppzy.close_calls(f"zd-{t}") for t in solved} == {1}
    assert uppzy.call_count("feedback") == 20


def _read_due(engine: Runtime, tid: int) -> bool:
    return bool(tickets.rows(engine.db, "zd", [str(tid)])[str(tid)].needs_sync)


def test_a_change_marked_while_the_ticket_is_read_gets_its_own_read(
    pg_url: str, engines, zendesk: ZendeskSimulator, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
):
    """Another instance's poll (or a webhook) marks the ticket between the read's snapshot of
    its row and the read's commit. The read covers only the change it claimed, so the row must stay
    due: clearing the mark from the read's stale copy of the row loses the change (a solved
    ticket whose session then never closes)."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    engine = engines(pg_url, "reader")
    engine.poll("zd")
    original = conversation.plan

    def marked_meanwhile(*args, **kwargs):
        marker = threading.Thread(target=ingest.mark_ticket, args=(engine, "zd", str(tid)))
        marker.start()
        marker.join(timeout=10)
        return original(*args, **kwargs)

    monkeypatch.setattr(conversation, "plan", marked_meanwhile)
    [record] = claim_reads(engine, 10)
    conversation.sync_ticket(engine, record)
    assert _read_due(engine, tid)


@pytest.mark.parametrize("tries", [1, ingest.PAGE_TRIES])
def test_a_poll_that_loaded_the_row_before_a_read_ended_keeps_its_mark(
    pg_url: str, engines, zendesk: ZendeskSimulator, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    tries: int,
):
    """The poll loads a page's rows, a read of one of them ends (clearing the mark it covered),
    then the poll stores the change it saw: the row must be due again, whatever the poll's copy
    of the row said (with one try, the poll writes what it decided on that copy; with more, it
    finds the row changed and decides again)."""
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Question?")
    engine = engines(pg_url, "poller")
    engine.poll("zd")
    [record] = claim_reads(engine, 10)
    with session_scope(engine.db) as db:
        cursor = db.get(AdapterState, "zd").cursor  # type: ignore[union-attr]
    snapshot, ended = tickets.rows, []

    def read_ends_meanwhile(*args: Any) -> Any:
        rows = snapshot(*args)  # the poll's copy of its page
        if not ended:
            ended.append(True)
            conversation.sync_ticket(engine, record)
            assert not _read_due(engine, tid)
        return rows

    monkeypatch.setattr(tickets, "rows", read_ends_meanwhile)
    monkeypatch.setattr(ingest, "PAGE_TRIES", tries)
    solved = Ticket(external_id=str(tid), status="solved", resolved=True)
    assert ingest._store_page(engine, "zd", [solved], cursor) == 1
    assert ended and _read_due(engine, tid)


def _waiting_on_locks(db: Any) -> int:
    """Backends of this database waiting for a lock (a fresh look each time: PostgreSQL keeps
    one statistics snapshot per transaction)."""
    with db.connect() as watcher:
        return int(watcher.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar())


def test_a_feed_page_that_deadlocks_with_another_writer_is_decided_again(
    pg_url: str, engines, zendesk: ZendeskSimulator, caplog: pytest.LogCaptureFixture  # noqa: F811
):
    """A page marks its tickets' rows in page order while another transaction (a group
    commit of reads) holds one of them and then wants one the page holds. PostgreSQL ends the
    deadlock by rolling one back; when that is the poll, the page is decided again and stored,
    instead of the poll failing (before: an error, and the page waited for the next poll)."""
    engine = engines(pg_url, "poller")
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first, second = (zendesk.create_ticket(customer, f"Q{n}?") for n in (1, 2))
    assert engine.poll("zd") == 2
    zendesk.customer_reply(first, "more on one")
    zendesk.customer_reply(second, "more on two")  # the page lists it after the first
    other = create_engine(pg_url)
    try:
        with other.connect() as holder:
            def lock(ticket: int) -> None:
                holder.execute(text("UPDATE ticket SET sync_attempts = sync_attempts "
                                    "WHERE external_id = :t"), {"t": str(ticket)})
            lock(second)
            outcome: list[object] = []

            def poll() -> None:
                try:
                    outcome.append(engine.poll("zd"))
                except Exception as exc:  # the failure this test is about
                    outcome.append(exc)

            caplog.set_level(logging.INFO, logger="connector.store.adapters")
            poller = threading.Thread(target=poll)
            poller.start()
            wait_for(lambda: _waiting_on_locks(other) == 1, 10,
                     "the poll to hold the first row and wait for the second")
            lock(first)  # waits for the poll: a deadlock, found first by the poll's wait
            holder.commit()
            poller.join(30)
    finally:
        other.dispose()
    assert outcome == [2]
    assert "deciding it again" in caplog.text
    with session_scope(engine.db) as session:
        rows = tickets.rows_in(session, "zd", [str(first), str(second)])
    assert len(rows) == 2 and all(r.needs_sync for r in rows.values())
