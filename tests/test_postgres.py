"""Several instances on one PostgreSQL: disjoint claims, adapter leases, takeover after a kill.

Runs against the real server (``CONNECTOR_TEST_DATABASE_URL``, default the local ``test``
database); each test gets its own schema. Without a server the tests are skipped, except under
``CI=true`` where that is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, select
from support import config_dict, in_ci, wait_for

from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import parse_config
from connector.engine.runtime import Runtime
from connector.store import claims
from connector.store.db import current_revision, make_engine, migrate, session_scope
from connector.store.models import AdapterState, Turn, utcnow
from connector.testing.uppzy_sim import UppzySimulator

BASE_URL = os.environ.get(
    "CONNECTOR_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    admin = create_engine(BASE_URL)
    try:
        with admin.connect():
            pass
    except Exception as exc:
        admin.dispose()
        if in_ci():
            pytest.fail(f"PostgreSQL is required under CI but unreachable at {BASE_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {BASE_URL} (set CONNECTOR_TEST_DATABASE_URL): {exc}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in BASE_URL else "?"
    try:
        yield f"{BASE_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def pg_config(tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator, url: str,
              **overrides) -> dict:
    data = config_dict(tmp_path, uppzy, zendesk, **overrides)
    data["database"] = {"url": url}
    data["engine"] = {"tick": "0.1s", "lease_ttl": "3s", **data.get("engine", {})}
    return data


def test_same_migrations_work_on_postgresql(pg_url: str):
    db = make_engine(pg_url)
    migrate(db)
    migrate(db)  # idempotent
    assert current_revision(db) is not None
    assert claims.lock_sqlite_file(db) is None  # no file lock on a server database
    db.dispose()


def test_concurrent_claims_never_overlap(pg_url: str):
    db = make_engine(pg_url)
    migrate(db)
    now = utcnow()
    with session_scope(db) as s:
        for i in range(300):
            s.add(Turn(adapter="a", ticket_id=str(i), session_id=f"a-{i}", site_id="s",
                       last_message_id=str(i), last_message_at=now))
    got: dict[str, list[int]] = {}

    def worker(owner: str) -> None:
        mine: list[int] = []
        for _ in range(40):
            with session_scope(db) as s:
                mine += [t.id for t in claims.claim_turns(
                    s, owner, utcnow(), timedelta(seconds=60), 10) if t.id is not None]
        got[owner] = mine

    threads = [threading.Thread(target=worker, args=(f"i{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = [i for ids in got.values() for i in ids]
    assert len(everything) == 300 and len(set(everything)) == 300
    assert all(got.values()), "every instance got a share"
    db.dispose()


def test_heartbeat_never_waits_on_a_row_a_group_commit_holds(pg_url: str):
    """A group commit holds turn and ticket rows in whatever order its writes came; a heartbeat
    that waited for them in its own order could deadlock with it (seen in CI: "deadlock
    detected" between the two). It skips a locked row, whose holder is writing it anyway, and
    extends the rest."""
    db = make_engine(pg_url)
    migrate(db)
    now = utcnow()
    with session_scope(db) as s:
        turns = [Turn(adapter="a", ticket_id=str(i), session_id=f"a-{i}", site_id="s",
                      last_message_id=str(i), last_message_at=now, claim_owner="me",
                      claim_until=now) for i in range(2)]
        s.add_all(turns)
        s.flush()
        ids = [t.id for t in turns]
    held = claims.Held(turns=ids)
    finished = threading.Event()
    with db.connect() as batch:  # the writer's transaction, holding the first turn's row
        batch.execute(text("SELECT id FROM turn WHERE id = :id FOR UPDATE"), {"id": ids[0]})
        beat = threading.Thread(target=lambda: (
            claims.heartbeat(db, "me", timedelta(seconds=60), held), finished.set()))
        beat.start()
        assert finished.wait(20), "the heartbeat waited for the locked row"
        batch.rollback()
    beat.join(10)
    with session_scope(db) as s:
        until = {t.id: t.claim_until for t in s.exec(select(Turn).where(col(Turn.id).in_(ids)))}
    assert until[ids[0]] == now  # skipped while locked: its holder writes it
    assert until[ids[1]] > now + timedelta(seconds=30)
    db.dispose()


def test_adapter_lease_is_exclusive_until_it_expires(pg_url: str):
    db = make_engine(pg_url)
    migrate(db)
    ttl = timedelta(seconds=3)
    with session_scope(db) as s:
        assert claims.hold_adapter(s, "zd", "one", utcnow(), ttl)
    with session_scope(db) as s:
        assert not claims.hold_adapter(s, "zd", "two", utcnow(), ttl)
        assert claims.hold_adapter(s, "zd", "one", utcnow(), ttl)  # renewal
    later = utcnow() + timedelta(seconds=4)
    with session_scope(db) as s:
        assert claims.hold_adapter(s, "zd", "two", later, ttl)  # the holder went silent
    with session_scope(db) as s:
        assert s.get(AdapterState, "zd").lease_owner == "two"
    db.dispose()


def start(config: Path, log: Path, instance: str) -> subprocess.Popen:
    env = {**os.environ, "CONNECTOR_INSTANCE": instance}
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL, env=env,
    )


def write_config(tmp_path: Path, data: dict) -> Path:
    data["engine"]["instance_id"] = "${CONNECTOR_INSTANCE}"
    path = tmp_path / "pg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def posted_per_ticket(url: str) -> Counter[int]:
    db = make_engine(url)
    with Session(db) as s:
        rows = s.exec(select(Turn.ticket_id).where(Turn.state == "posted")).all()
    db.dispose()
    return Counter(int(t) for t in rows)


def test_three_instances_draft_every_turn_exactly_once(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
):
    customers = [zendesk.add_user(f"C{i}", "end-user", f"c{i}@example.org") for i in range(50)]
    tickets = [zendesk.create_ticket(customers[i % 50], f"Q{i}") for i in range(500)]
    config = write_config(tmp_path, pg_config(tmp_path, uppzy, zendesk, pg_url))
    log = tmp_path / "instances.log"
    procs = [start(config, log, f"inst-{n}") for n in range(3)]
    try:
        wait_for(lambda: len(zendesk.notes_by(zendesk.bot_user_id)) >= 500, 180,
                 "500 drafts")
        time.sleep(2)
        for proc in procs:
            assert stop_gracefully(proc) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    notes = Counter(n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id))
    assert notes == Counter(dict.fromkeys(tickets, 1))
    assert posted_per_ticket(pg_url) == notes
    assert uppzy.max_concurrent_per_session <= 1
    text_log = log.read_text()
    workers = {n for n in range(3) if f"inst-{n}" in text_log}
    assert workers == {0, 1, 2}


def stop_gracefully(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=15)


def test_killed_instance_is_taken_over_within_the_lease(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
):
    uppzy.answer_time = (0.2, 1.0)
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    first = [zendesk.create_ticket(customer, f"Before {i}") for i in range(60)]
    config = write_config(tmp_path, pg_config(tmp_path, uppzy, zendesk, pg_url))
    log = tmp_path / "instances.log"
    db = make_engine(pg_url)
    migrate(db)
    procs = {name: start(config, log, name) for name in ("alpha", "beta")}

    def lease_owner() -> str | None:
        with Session(db) as s:
            state = s.get(AdapterState, "zd")
            return state.lease_owner if state else None

    try:
        wait_for(lambda: lease_owner() in procs, 30, "an adapter lease")
        time.sleep(1.0)  # mid-run: answers in flight
        victim = lease_owner()
        procs[victim].kill()
        procs[victim].wait(timeout=10)
        killed_at = time.monotonic()
        survivor = next(n for n in procs if n != victim)
        wait_for(lambda: lease_owner() == survivor, 15, "the survivor to take the adapter")
        # lease_ttl (3 s) plus a poll interval, with room for a loaded machine
        assert time.monotonic() - killed_at < 10
        later = [zendesk.create_ticket(customer, f"After {i}") for i in range(20)]
        wait_for(lambda: all(n >= 1 for n in _notes(zendesk, first + later).values()), 60,
                 "every ticket drafted after the takeover")
        # A note the victim posted just before the kill is recorded only when the survivor takes
        # the expired posting turn over (after the adapter's timeout) and finds its marker.
        wait_for(lambda: posted_per_ticket(pg_url) == _notes(zendesk, first + later), 60,
                 "every posted note recorded as posted")
        time.sleep(2)
        assert stop_gracefully(procs[survivor]) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        db.dispose()
    notes = _notes(zendesk, first + later)
    assert set(notes.values()) == {1}, {t: n for t, n in notes.items() if n != 1}
    assert posted_per_ticket(pg_url) == notes


def _notes(zendesk: ZendeskSimulator, tickets: list[int]) -> Counter[int]:
    counted = Counter(n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id))
    return Counter({t: counted[t] for t in tickets})


def test_engine_reports_its_instance_and_runs_once_on_postgresql(
    pg_url: str, tmp_path: Path, uppzy: UppzySimulator, zendesk: ZendeskSimulator
):
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    tid = zendesk.create_ticket(customer, "Hello PostgreSQL")
    data = pg_config(tmp_path, uppzy, zendesk, pg_url, engine={"instance_id": "pg-test-1"})
    engine = Runtime(parse_config(data))
    engine.start()
    try:
        assert engine.run_once()
    finally:
        engine.shutdown()
    assert [n["ticket_id"] for n in zendesk.notes_by(zendesk.bot_user_id)] == [tid]
    with Session(engine.db) as s:
        assert s.get(AdapterState, "zd").lease_owner is None  # released at a clean stop
