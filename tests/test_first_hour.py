"""The operator's first hour: a wrong setting stops loudly and names itself, ``check`` proves
what it can, a pause ends with its cause, ``status`` tells the truth (issue: first hour)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from test_pipeline import notes_per_ticket

from adapters.simulation import Fault
from adapters.zendesk.simulator import ZendeskSimulator
from connector.core.errors import BadRequest, NotFound, TransportError
from connector.core.http import HttpClient, RetryPolicy
from connector.engine.runtime import Runtime
from connector.store.db import session_scope
from connector.store.models import AdapterState, utcnow
from connector.testing.uppzy_sim import UppzySimulator

WrittenConfig = Callable[..., Path]


def connector(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def waiting_tickets(zendesk: ZendeskSimulator, n: int = 5) -> list[int]:
    customer = zendesk.add_user("C", "end-user", "c@example.org")
    return [zendesk.create_ticket(customer, f"Question {i}?") for i in range(n)]


# ----- configuration errors are not answers --------------------------------------------------
@pytest.mark.parametrize(("uppzy_keys", "named"), [
    ({"site_id": "no-such-site"}, "uppzy.site_id"),
    ({"base_url_suffix": ""}, "uppzy.base_url"),
])
def test_a_wrong_site_or_base_url_stops_the_daemon_before_any_note(
    config_file: WrittenConfig, zendesk: ZendeskSimulator, uppzy: UppzySimulator,
    uppzy_keys: dict, named: str,
):
    tickets = waiting_tickets(zendesk)
    keys = dict(uppzy_keys)
    if "base_url_suffix" in keys:  # the host without Uppzy's /api/v1 path
        keys = {"base_url": uppzy.url + keys.pop("base_url_suffix")}
    result = connector("run", "--config", str(config_file(uppzy=keys)), timeout=60)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "configuration error" in result.stderr and named in result.stderr
    assert sum(notes_per_ticket(zendesk)[t] for t in tickets) == 0
    assert len(uppzy.requests_for()) == 0


# ----- check -------------------------------------------------------------------------------------
def test_check_finds_a_wrong_key_without_a_tenant_id(
    config_file: WrittenConfig, uppzy: UppzySimulator
):
    result = connector("check", "--config", str(config_file(uppzy={"api_key": "wrong-key-77"})))
    assert result.returncode == 3
    assert "fix uppzy.api_key" in result.stdout and "wrong-key-77" not in result.stdout


def test_check_names_a_wrong_site_and_says_what_it_skipped(
    config_file: WrittenConfig, uppzy: UppzySimulator
):
    result = connector("check", "--json", "--config",
                       str(config_file(uppzy={"site_id": "nope"})))
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["uppzy site nope"]["status"] == "failed"
    assert "uppzy.site_id" in checks["uppzy site nope"]["key"]
    assert checks["uppzy tenant limits"]["status"] == "skip"
    assert checks["database"]["status"] == "ok"


@pytest.mark.parametrize(("url", "cause"), [
    ("sqlit:///connector.db", "not a database URL"),
    ("sqlite:////no/such/folder/connector.db", "does not exist"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "refused"),
])
def test_database_mistakes_are_one_line_naming_database_url(
    config_file: WrittenConfig, tmp_path: Path, url: str, cause: str
):
    path = config_file(database={"url": url})
    checked = connector("check", "--config", str(path))
    assert checked.returncode == 1
    assert "fix database.url" in checked.stdout and cause in checked.stdout
    run = connector("run", "--once", "--config", str(path))
    assert run.returncode == 2
    assert run.stderr.startswith("database.url: ") and cause in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


# ----- pauses end with their cause ---------------------------------------------------------------
def pause(engine: Runtime, reason: str = "authentication failed: HTTP 401") -> None:
    with session_scope(engine.db) as db:
        state = db.get(AdapterState, "zd") or AdapterState(adapter="zd")
        state.paused_until = utcnow() + timedelta(seconds=300)
        state.pause_reason = reason
        db.add(state)


def test_a_restart_lifts_a_pause_and_polls_at_once(make_engine, zendesk: ZendeskSimulator):
    waiting_tickets(zendesk, 1)
    first = make_engine()
    pause(first)
    first.shutdown(grace=1)
    second = make_engine()
    assert second.poll("zd") == 1  # polled in the first interval, not five minutes later


def test_check_and_resume_lift_a_pause(
    config_file: WrittenConfig, make_engine, zendesk: ZendeskSimulator
):
    path = config_file()
    engine = make_engine()
    pause(engine)
    engine.shutdown(grace=1)
    checked = connector("check", "--config", str(path))
    assert "adapter zd: credentials work again" in checked.stdout
    status = json.loads(connector("status", "--json", "--config", str(path)).stdout)
    assert status["adapters"][0]["paused"] is False
    engine = make_engine()
    pause(engine)
    engine.shutdown(grace=1)
    resumed = connector("resume", "zd", "--config", str(path))
    assert resumed.returncode == 0 and "adapter zd resumed" in resumed.stdout
    assert connector("resume", "nope", "--config", str(path)).returncode == 2


def test_run_once_with_every_adapter_refused_exits_3_with_the_reason(
    config_file: WrittenConfig, zendesk: ZendeskSimulator
):
    waiting_tickets(zendesk, 2)
    path = config_file(adapter={"auth": {"email": "bot@example.com", "api_token": "revoked"}})
    result = connector("run", "--once", "--config", str(path), timeout=60)
    assert result.returncode == 3
    assert "adapter zd paused: authentication failed" in result.stderr


# ----- status tells the truth --------------------------------------------------------------------
def test_status_never_creates_a_database(config_file: WrittenConfig, tmp_path: Path):
    path = config_file()
    result = connector("status", "--config", str(path))
    assert result.returncode == 2 and "no database at" in result.stderr
    assert not (tmp_path / "connector.db").exists()


def test_status_says_not_running_then_ok_and_fits_80_columns(
    config_file: WrittenConfig, make_engine, zendesk: ZendeskSimulator
):
    path = config_file()
    engine = make_engine()
    engine.run_once()
    engine.shutdown(grace=1)  # a clean stop hands the poll lease back
    stopped = connector("status", "--config", str(path))
    assert "zd (zendesk): not running" in stopped.stdout
    engine = make_engine()
    engine.poll("zd")
    running = connector("status", "--config", str(path))
    assert "zd (zendesk): ok" in running.stdout
    assert max(len(line) for line in running.stdout.splitlines()) <= 80


# ----- errors that point at the fix --------------------------------------------------------------
def test_remote_errors_name_the_url_the_host_and_the_vendors_description(
    zendesk: ZendeskSimulator,
):
    """A 404 shows the URL tried (a wrong base URL is the usual cause), a refused connection
    its host:port, and a 422 the vendor's description and details, not only its error code."""
    client = HttpClient(zendesk.url + "/wrong/base", name="zd")
    with pytest.raises(NotFound, match=r"HTTP 404 at http://127\.0\.0\.1:\d+/wrong/base/x"):
        client.request("GET", "/x")
    zendesk.add_fault(Fault(endpoint="ticket_update", status=422, body={
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"base": [{"description": "Body: cannot be blank"}]}}))
    with pytest.raises(BadRequest) as invalid:
        HttpClient(zendesk.url, name="zd").request("PUT", "/api/v2/tickets/1.json",
                                                   json_body={})
    assert "Record validation errors" in str(invalid.value)
    assert "Body: cannot be blank" in str(invalid.value)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransportError, match=rf"connection refused by 127\.0\.0\.1:{port}"):
        HttpClient(f"http://127.0.0.1:{port}", name="zd",
                   retry=RetryPolicy(attempts=1)).request("GET", "/x")
