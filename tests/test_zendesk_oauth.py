"""Zendesk OAuth (client credentials, rotating refresh tokens) against the simulator over HTTP."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support import SeenCalls, config_dict

from adapters.auth import CredentialStore, MemoryCredentials
from adapters.zendesk import ZendeskAdapter, ZendeskSettings
from adapters.zendesk.simulator import ZendeskSimulator
from connector.cli import status
from connector.cli.checks import run_checks
from connector.config import parse_config
from connector.core.errors import AuthenticationFailed
from connector.engine.runtime import Runtime
from connector.store.credentials import DatabaseCredentials
from connector.store.db import make_engine, migrate
from connector.testing.uppzy_sim import UppzySimulator

MakeAdapter = Callable[..., ZendeskAdapter]


@pytest.fixture
def sim() -> Iterator[ZendeskSimulator]:
    simulator = ZendeskSimulator(exclude_newest=0, token_ttl=60)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def make_adapter() -> Iterator[MakeAdapter]:
    adapters: list[ZendeskAdapter] = []

    def make(simulator: ZendeskSimulator, auth: dict[str, Any],
             store: CredentialStore | None = None) -> ZendeskAdapter:
        settings = ZendeskSettings(name="zd", type="zendesk", url=simulator.url, auth=auth)
        settings.locate("adapters[0]")
        adapter = ZendeskAdapter(settings)
        if store is not None:
            adapter.bind_credentials(store)
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        adapter.close()


def client_auth(sim: ZendeskSimulator, **extra: str) -> dict[str, str]:
    return {"client_id": sim.bot_client_id, "client_secret": sim.bot_client_secret, **extra}


def statuses(sim: ZendeskSimulator, endpoint: str) -> SeenCalls[int]:
    return SeenCalls(sim, lambda call: call.endpoint == endpoint, lambda call: call.status)


def grant(sim: ZendeskSimulator, body: dict[str, Any], *, form: bool = False) -> requests.Response:
    url = f"{sim.url}/oauth/tokens"
    if form:
        return requests.post(url, data=body, timeout=5)
    return requests.post(url, json=body, timeout=5)


# ----- the simulator keeps to Zendesk's documents ------------------------------------------------
def test_simulator_takes_grants_as_json_only(sim: ZendeskSimulator) -> None:
    """Fact: Create Token for Grant Type takes its parameters formatted as JSON."""
    body = {"grant_type": "client_credentials", **client_auth(sim)}
    assert grant(sim, body, form=True).status_code == 400
    answer = grant(sim, body)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "bearer" and answer.json()["expires_in"] == 60


def test_simulator_expires_access_tokens(sim: ZendeskSimulator) -> None:
    """Fact: access tokens of new clients expire (default 30 minutes)."""
    token = grant(sim, {"grant_type": "client_credentials", **client_auth(sim)}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(f"{sim.url}/api/v2/users/me.json", headers=headers,
                        timeout=5).json()["user"]["id"] == sim.bot_user_id
    sim.expire_access_tokens()
    assert requests.get(f"{sim.url}/api/v2/users/me.json", headers=headers,
                        timeout=5).status_code == 401


def test_simulator_refresh_rotates_and_invalidates_both_previous_tokens(
    sim: ZendeskSimulator,
) -> None:
    """Fact: a refresh returns a new access and refresh token and invalidates the previous ones."""
    first = sim.authorize(sim.bot_user_id)
    body = {"grant_type": "refresh_token", "refresh_token": first, **client_auth(sim)}
    one = grant(sim, body).json()
    two = grant(sim, {**body, "refresh_token": one["refresh_token"]}).json()
    assert len({first, one["refresh_token"], two["refresh_token"]}) == 3
    assert grant(sim, body).status_code == 400  # the first one is spent
    assert grant(sim, {**body, "refresh_token": one["refresh_token"]}).status_code == 400
    old = {"Authorization": f"Bearer {one['access_token']}"}
    assert requests.get(f"{sim.url}/api/v2/users/me.json", headers=old,
                        timeout=5).status_code == 401


def test_simulator_refuses_every_grant_of_a_revoked_client(sim: ZendeskSimulator) -> None:
    sim.revoke_client(sim.bot_client_id)
    answer = grant(sim, {"grant_type": "client_credentials", **client_auth(sim)})
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


# ----- client credentials ------------------------------------------------------------------------
def test_client_credentials_token_is_renewed_before_it_expires() -> None:
    with ZendeskSimulator(exclude_newest=0, token_ttl=2) as sim:
        settings = ZendeskSettings(name="zd", type="zendesk", url=sim.url, auth=client_auth(sim))
        adapter = ZendeskAdapter(settings)
        seen = statuses(sim, "users_me")
        try:
            adapter.check()
            time.sleep(1.1)  # past half the token's life: renewed before Zendesk refuses it
            adapter.check()
        finally:
            adapter.close()
        assert sim.call_count("oauth_tokens") == 2
        assert 401 not in seen


def test_scope_defaults_to_read_write_and_follows_the_setting(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    default = make_adapter(sim, client_auth(sim))
    narrow = make_adapter(sim, client_auth(sim, scope="tickets:read"))
    assert default.settings.auth.scope == "read write"  # type: ignore[union-attr]
    assert narrow.settings.auth.scope == "tickets:read"  # type: ignore[union-attr]
    assert default.check().startswith("admin")


def test_an_expired_token_costs_one_401_and_one_renewal(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim, client_auth(sim))
    adapter.check()
    sim.expire_access_tokens()
    seen = statuses(sim, "users_me")
    adapter.check()
    assert list(seen) == [401, 200]
    assert sim.call_count("oauth_tokens") == 2


def test_threads_refused_with_the_same_token_renew_it_once(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim, client_auth(sim))
    refused = adapter.auth_headers()
    assert adapter.refresh_credentials(refused)
    renewed = adapter.auth_headers()
    assert renewed != refused
    assert adapter.refresh_credentials(refused)  # a second thread's 401 on the old token
    assert adapter.auth_headers() == renewed
    assert sim.call_count("oauth_tokens") == 2


def test_a_revoked_client_fails_naming_the_auth_key(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim, client_auth(sim))
    adapter.check()
    sim.revoke_client(sim.bot_client_id)
    with pytest.raises(AuthenticationFailed) as refused:
        adapter.check()
    message = str(refused.value)
    assert "adapters[0].auth" in message and "invalid_client" in message
    assert sim.bot_client_secret not in message


# ----- refresh tokens ----------------------------------------------------------------------------
@pytest.fixture
def db_store(tmp_path: Path) -> Iterator[DatabaseCredentials]:
    db = make_engine(f"sqlite:///{tmp_path / 'connector.db'}")
    migrate(db)
    yield DatabaseCredentials(db)
    db.dispose()


def test_refresh_token_rotations_survive_a_restart(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, db_store: DatabaseCredentials
) -> None:
    original = sim.authorize(sim.bot_user_id)
    auth = client_auth(sim, refresh_token=original)
    first = make_adapter(sim, auth, db_store)
    first.check()  # rotation 1
    for _ in range(2):  # rotations 2 and 3, each after the access token expired
        sim.expire_access_tokens()
        first.check()
    first.close()
    assert len(sim.refresh_tokens_used) == 3

    restarted = make_adapter(sim, auth, db_store)  # same config, the original token in it
    restarted.check()
    used = sim.refresh_tokens_used
    assert used.count(original) == 1 and len(set(used)) == 4
    assert db_store.read(restarted.tokens.store_key) not in used  # type: ignore[union-attr]


def test_the_instance_that_loses_the_rotation_race_continues_with_the_stored_token(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    class StaleOnce(MemoryCredentials):
        """Its first read comes before the other instance's write lands."""

        stale = True

        def read(self, name: str) -> str | None:
            if self.stale:
                self.stale = False
                return None
            return super().read(name)

    store = StaleOnce()
    original = sim.authorize(sim.bot_user_id)
    auth = client_auth(sim, refresh_token=original)
    winner = make_adapter(sim, auth, store)
    winner.check()  # rotates (its read was the stale one: the original was the right choice)
    loser = make_adapter(sim, auth, store)
    store.stale = True  # the loser read before the winner stored: it sends the spent original
    assert loser.check().startswith("admin")
    used = sim.refresh_tokens_used
    assert used[:2] == [original, original] and len(used) == 3
    assert store.read(loser.tokens.store_key) not in used  # type: ignore[union-attr]


def test_a_refresh_grant_without_a_store_is_refused_before_any_call(
    sim: ZendeskSimulator, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sim, client_auth(sim, refresh_token=sim.authorize(sim.bot_user_id)))
    with pytest.raises(AuthenticationFailed, match=r"adapters\[0\]\.auth"):
        adapter.check()
    assert sim.call_count("oauth_tokens") == 0


def test_tokens_never_reach_debug_logs(
    sim: ZendeskSimulator, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    original = sim.authorize(sim.bot_user_id)
    store = MemoryCredentials()
    with caplog.at_level(logging.DEBUG):
        adapter = make_adapter(sim, client_auth(sim, refresh_token=original), store)
        adapter.check()
        sim.expire_access_tokens()
        adapter.check()
    assert "oauth_token" in caplog.text  # the grant was logged, at DEBUG
    secrets = [original, sim.bot_client_secret, *sim.refresh_tokens_used,
               store.read(adapter.tokens.store_key) or "?",  # type: ignore[union-attr]
               adapter.auth_headers()["Authorization"].removeprefix("Bearer ")]
    for secret in secrets:
        assert secret not in caplog.text


# ----- the engine --------------------------------------------------------------------------------
def test_a_revoked_client_pauses_only_its_adapter_naming_the_key(
    tmp_path: Path, uppzy: UppzySimulator
) -> None:
    with ZendeskSimulator(exclude_newest=0) as revoked, ZendeskSimulator(exclude_newest=0) as ok:
        revoked.revoke_client(revoked.bot_client_id)
        customer = ok.add_user("C", "end-user")
        ok.create_ticket(customer, "still served")
        adapters = [
            {"name": name, "type": "zendesk", "url": s.url, "auth": client_auth(s),
             "start_from": "10m"}
            for name, s in (("gone", revoked), ("fine", ok))
        ]
        config = parse_config(config_dict(tmp_path, uppzy, ok, adapters=adapters))
        engine = Runtime(config)
        engine.start()
        try:
            assert engine.poll("gone") == 0
            assert engine.poll("fine") == 1
            report = status.collect(config, engine.db)
        finally:
            engine.shutdown(grace=2)
            engine.db.dispose()
        checks = {result.name: result for result in run_checks(config)}
    by_name = {a["name"]: a for a in report["adapters"]}
    assert by_name["gone"]["paused"] and "adapters[0].auth" in by_name["gone"]["pause_reason"]
    assert not by_name["fine"]["paused"]
    gone = checks["adapter gone"]
    assert gone.status == "failed" and gone.refused and gone.key == "adapters[0].auth"
    assert "invalid_client" in gone.detail
    assert checks["adapter fine"].status == "ok"


# ----- the daemon with tokens that expire every few seconds --------------------------------------
def test_daemon_drafts_every_turn_once_while_tokens_expire_every_three_seconds(
    tmp_path: Path, uppzy: UppzySimulator
) -> None:
    """The issue's acceptance, scaled: 100 tickets over about 40 seconds, 3-second tokens."""
    with ZendeskSimulator(exclude_newest=0, token_ttl=3) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(config_dict(
            tmp_path, uppzy, sim, adapter={"auth": client_auth(sim), "poll_interval": "0.5s"},
            engine={"tick": "0.1s", "workers": 6})))
        log = tmp_path / "daemon.log"
        customers = [sim.add_user(f"C{i}", "end-user", f"c{i}@example.org") for i in range(100)]
        daemon = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--config", str(config),
             "--log-level", "debug"],
            stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL)
        try:
            tickets = []
            for n, customer in enumerate(customers):
                tickets.append(sim.create_ticket(customer, f"Question number {n}"))
                time.sleep(0.4)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and len(drafted(sim)) < len(tickets):
                time.sleep(0.5)
            time.sleep(2)  # would a late duplicate appear?
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=20) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(timeout=10)
        notes = drafted(sim)
        renewals = sim.call_count("oauth_tokens")
        refused = sum(1 for call in sim.calls if call.status == 401)
    assert sorted(notes) == sorted(tickets) and set(notes.values()) == {1}
    assert renewals >= 15  # many renewals happened while the daemon worked
    assert refused <= renewals
    text = log.read_text()
    assert " DEBUG " in text and "paused" not in text
    for secret in (*sim.issued_tokens, sim.bot_client_secret):
        assert secret not in text


def drafted(sim: ZendeskSimulator) -> Counter[int]:
    return Counter(note["ticket_id"] for note in sim.notes_by(sim.bot_user_id))
