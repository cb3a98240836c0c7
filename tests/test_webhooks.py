"""Push webhooks over real HTTP: each helpdesk's simulator signs and delivers as the vendor does,
the ops listener verifies, marks the ticket and starts its re-read at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlmodel import select
from support import API_KEY, wait_for

from adapters.base import Adapter
from adapters.freshdesk.adapter import FreshdeskAdapter, FreshdeskSettings
from adapters.freshdesk.simulator import FreshdeskSimulator
from adapters.front.simulator import FrontSimulator
from adapters.helpscout.simulator import HelpScoutSimulator
from adapters.signatures import (
    HelpScoutSignature,
    HubSignatureSha1,
    SharedSecretHeader,
    ZendeskSignature,
    post_webhook,
    scheme_for,
    ticket_id,
)
from adapters.simulation import Simulator
from adapters.zammad.simulator import ZammadSimulator
from adapters.zendesk.adapter import ZendeskAdapter
from adapters.zendesk.simulator import ZendeskSimulator
from connector.config import parse_config
from connector.core.errors import WebhookPayloadError
from connector.daemon.ops import Ops, start_ops
from connector.daemon.ops_server import MAX_BODY
from connector.daemon.scheduler import Daemon
from connector.daemon.webhook_route import DeliveryLog, register_webhooks
from connector.engine.runtime import Runtime
from connector.store.db import session_scope
from connector.store.models import TicketRecord
from connector.testing.uppzy_sim import UppzySimulator

SECRET = "whsec-3f9a1c77b2e04d5e"
CUSTOMER_TEXT = "Where is parcel 7781? private-customer-words"
WAIT = 15.0  # an upper bound for waits on background work, never a speed assertion


@dataclass(frozen=True)
class Vendor:
    type: str
    make_sim: Callable[[], Simulator]
    new_ticket: Callable[[Any], int]  # a ticket with one public customer message
    posts: Callable[[Any, int], list[Any]]  # what our bot posted on the ticket
    read_endpoint: str  # the simulator endpoint a conversation re-read calls

    def __str__(self) -> str:
        return self.type


def _zendesk_ticket(sim: ZendeskSimulator) -> int:
    return sim.create_ticket(sim.add_user("Cleo", "end-user", "cleo@example.org"), CUSTOMER_TEXT)


def _helpscout_ticket(sim: HelpScoutSimulator) -> int:
    return sim.create_conversation(sim.add_customer("Cleo", email="cleo@example.org"),
                                   CUSTOMER_TEXT)


def _zammad_ticket(sim: ZammadSimulator) -> int:
    return sim.create_ticket(sim.add_user("Cleo", "customer", "cleo@example.org"), CUSTOMER_TEXT)


def _freshdesk_ticket(sim: FreshdeskSimulator) -> int:
    return sim.create_ticket(sim.add_contact("Cleo", "cleo@example.org"), CUSTOMER_TEXT)


VENDORS = [
    Vendor("zendesk", lambda: ZendeskSimulator(exclude_newest=0), _zendesk_ticket,
           lambda sim, t: [n for n in sim.notes_by(sim.bot_user_id) if n["ticket_id"] == t],
           "ticket_comments"),
    Vendor("helpscout", HelpScoutSimulator, _helpscout_ticket,
           lambda sim, t: [p for p in sim.posts_by(sim.bot_user_id)
                           if p.get("conversation_id", t) == t],
           "threads_v3"),
    Vendor("zammad", lambda: ZammadSimulator(index_lag=0), _zammad_ticket,
           lambda sim, t: sim.posts_by(sim.bot_user_id, t), "articles_by_ticket"),
    Vendor("freshdesk", FreshdeskSimulator, _freshdesk_ticket,
           lambda sim, t: [n for n in sim.notes_by(sim.bot_agent_id) if n["ticket_id"] == t],
           "ticket_conversations"),
]


@dataclass
class Stack:
    vendor: Vendor
    sim: Any
    engine: Runtime
    ops: Ops
    polls: list[str]

    @property
    def url(self) -> str:
        assert self.ops.server is not None
        return f"{self.ops.server.url}/webhooks/hd"

    def records(self) -> list[TicketRecord]:
        with session_scope(self.engine.db) as db:
            return list(db.exec(select(TicketRecord)).all())

    def record(self, ticket: int) -> TicketRecord | None:
        found = [r for r in self.records() if r.external_id == str(ticket)]
        return found[0] if found else None


@pytest.fixture
def make_stack(tmp_path: Path, uppzy: UppzySimulator) -> Iterator[Callable[..., Stack]]:
    """A simulator, an engine on it (poll every 60 s) and the ops listener with webhooks."""
    started: list[tuple[Simulator, Runtime, Ops]] = []

    def build(vendor: Vendor, **adapter: Any) -> Stack:
        sim = vendor.make_sim().start()
        config = parse_config({
            "uppzy": {"base_url": uppzy.base_url, "api_key": API_KEY, "site_id": "site-1",
                      "poll_interval": "0.2s", "answer_timeout": "20s"},
            "database": {"url": f"sqlite:///{tmp_path / f'{len(started)}.db'}"},
            "adapters": [{"name": "hd", "type": vendor.type, **sim.adapter_config(),
                          "poll_interval": "60s", "start_from": "10m",
                          "webhook_secret": SECRET, **adapter}],
            "engine": {"tick": "0.1s"},
            "ops": {"listen": "127.0.0.1:0"},
        })
        engine = Runtime(config)
        engine.start()
        ops = start_ops(engine, serve=True)
        started.append((sim, engine, ops))
        polls: list[str] = []
        engine.subscribe(lambda event, f: polls.append(event) if event.startswith("poll_")
                         else None)
        assert register_webhooks(ops, engine) is not None
        return Stack(vendor, sim, engine, ops, polls)

    yield build
    for sim, engine, ops in reversed(started):
        engine.shutdown(grace=2)
        ops.stop()
        engine.db.dispose()
        sim.stop()


def read_back(stack: Stack, ticket: int) -> bool:
    """Whether the engine has read the ticket's conversation since it was marked."""
    record = stack.record(ticket)
    return record is not None and record.synced_at is not None and not record.needs_sync


vendors = pytest.mark.parametrize("vendor", VENDORS, ids=str)


# ----- each scheme, over HTTP ------------------------------------------------------------------
@vendors
def test_a_signed_webhook_marks_the_ticket_and_it_is_read_at_once(
    make_stack: Callable[..., Stack], vendor: Vendor
):
    stack = make_stack(vendor)
    ticket = vendor.new_ticket(stack.sim)

    assert stack.sim.send_webhook(stack.url, SECRET, ticket) == 202

    wait_for(lambda: read_back(stack, ticket), WAIT, "the pushed ticket to be read")
    assert stack.sim.call_count(vendor.read_endpoint) >= 1
    assert stack.polls == []  # the read came from the webhook: the engine never polled


@vendors
def test_a_forged_or_unsigned_webhook_gets_401_and_changes_nothing(
    make_stack: Callable[..., Stack], vendor: Vendor, caplog: pytest.LogCaptureFixture
):
    stack = make_stack(vendor)
    ticket = vendor.new_ticket(stack.sim)
    calls = stack.sim.call_count()

    with caplog.at_level(logging.DEBUG):
        assert stack.sim.send_webhook(stack.url, "not-the-secret-at-all", ticket) == 401
        body = json.dumps({"ticket_id": str(ticket), "ticket": {"id": ticket}, "id": ticket,
                           "note": CUSTOMER_TEXT}).encode()
        assert post_webhook(stack.url, body, {"X-HelpScout-Event": "convo.created"}) == 401

    time.sleep(0.2)  # give a wrongly started read the chance to show up
    assert stack.records() == []
    assert stack.sim.call_count() == calls
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelno == logging.WARNING for r in refusals)
    assert "private-customer-words" not in caplog.text and SECRET not in caplog.text


def test_webhooks_are_counted_by_outcome(make_stack: Callable[..., Stack]):
    stack = make_stack(VENDORS[0])
    ticket = VENDORS[0].new_ticket(stack.sim)
    assert stack.sim.send_webhook(stack.url, "forged-secret-forged", ticket) == 401
    assert stack.sim.send_webhook(stack.url, SECRET, ticket) == 202
    assert stack.ops.server is not None
    metrics = requests.get(stack.ops.server.url + "/metrics", timeout=5).text
    assert 'connector_webhooks_total{adapter="hd",outcome="refused"} 1.0' in metrics
    assert 'connector_webhooks_total{adapter="hd",outcome="accepted"} 1.0' in metrics


# ----- replays, duplicates, size, routing --------------------------------------------------------
def test_a_stale_zendesk_timestamp_is_refused_even_when_correctly_signed(
    make_stack: Callable[..., Stack]
):
    stack = make_stack(VENDORS[0])
    ticket = VENDORS[0].new_ticket(stack.sim)
    old = (datetime.now(UTC) - timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (datetime.now(UTC) + timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert stack.sim.send_webhook(stack.url, SECRET, ticket, timestamp=old) == 401
    assert stack.sim.send_webhook(stack.url, SECRET, ticket, timestamp=future) == 401
    assert stack.records() == []
    recent = (datetime.now(UTC) - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stack.sim.send_webhook(stack.url, SECRET, ticket, timestamp=recent) == 202


@pytest.mark.parametrize(("vendor", "redeliver"), [
    (VENDORS[0], {"invocation_id": "01HZX-invocation-1"}),
    (VENDORS[2], {"delivery_id": "5f2d1c3e-delivery"}),
], ids=["zendesk", "zammad"])
def test_a_redelivered_webhook_is_processed_once(
    make_stack: Callable[..., Stack], vendor: Vendor, redeliver: dict[str, str]
):
    stack = make_stack(vendor)
    ticket = vendor.new_ticket(stack.sim)

    assert stack.sim.send_webhook(stack.url, SECRET, ticket, **redeliver) == 202
    wait_for(lambda: read_back(stack, ticket), WAIT, "the pushed ticket to be read")
    assert stack.sim.send_webhook(stack.url, SECRET, ticket, **redeliver) == 200

    record = stack.record(ticket)
    assert record is not None and record.change_seq == 1 and not record.needs_sync
    assert stack.sim.send_webhook(stack.url, SECRET, ticket) == 202  # a new delivery counts
    wait_for(lambda: (r := stack.record(ticket)) is not None and r.change_seq == 2, WAIT,
             "the second push to mark the ticket again")


def test_an_oversized_body_gets_413_unread(make_stack: Callable[..., Stack]):
    stack = make_stack(VENDORS[3])
    assert stack.ops.server is not None
    conn = http.client.HTTPConnection(stack.ops.server.host, stack.ops.server.port, timeout=5)
    try:
        conn.putrequest("POST", "/webhooks/hd")
        conn.putheader("Content-Length", str(MAX_BODY + 1))
        conn.putheader("X-Connector-Webhook-Secret", SECRET)
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert stack.records() == []


def test_unknown_or_unconfigured_adapters_have_no_webhook(
    make_stack: Callable[..., Stack], tmp_path: Path
):
    stack = make_stack(VENDORS[3])
    assert stack.ops.server is not None
    base = stack.ops.server.url
    headers = {"X-Connector-Webhook-Secret": SECRET}
    assert post_webhook(f"{base}/webhooks/nope", b'{"ticket_id": "1"}', headers) == 404

    plain = make_stack(VENDORS[3], webhook_secret=None)
    assert plain.ops.server is not None
    assert post_webhook(f"{plain.ops.server.url}/webhooks/hd", b'{"ticket_id": "1"}',
                        headers) == 404
    assert plain.records() == []


def test_a_signed_body_that_names_no_ticket_gets_400(make_stack: Callable[..., Stack]):
    stack = make_stack(VENDORS[3])
    headers = {"X-Connector-Webhook-Secret": SECRET}
    for body in (b"not json", b'["1"]', b'{"ticket_id": "../1"}', b'{"other": 1}'):
        assert post_webhook(stack.url, body, headers) == 400, body
    assert stack.records() == []


def test_the_freshdesk_secret_header_is_configurable(make_stack: Callable[..., Stack]):
    stack = make_stack(VENDORS[3], webhook_secret_header="X-Hook-Token")
    ticket = VENDORS[3].new_ticket(stack.sim)
    assert stack.sim.send_webhook(stack.url, SECRET, ticket) == 401  # default header: refused
    assert stack.sim.send_webhook(stack.url, SECRET, ticket, header="X-Hook-Token") == 202


# ----- end to end: a daemon polling every 60 s answers within seconds ----------------------------
@pytest.mark.parametrize("vendor", VENDORS, ids=str)
def test_a_webhook_gets_the_draft_posted_long_before_the_next_poll(
    make_stack: Callable[..., Stack], vendor: Vendor
):
    stack = make_stack(vendor)
    daemon = Daemon(stack.engine)
    runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    runner.start()
    try:
        wait_for(lambda: "poll_ok" in stack.polls, WAIT, "the first poll, at start")
        first_poll = time.monotonic()
        ticket = vendor.new_ticket(stack.sim)  # after the poll: only the webhook can tell

        assert stack.sim.send_webhook(stack.url, SECRET, ticket) == 202
        wait_for(lambda: vendor.posts(stack.sim, ticket), WAIT, "the draft on the pushed ticket")

        assert stack.polls == ["poll_ok"]  # posted with no second poll in between
        assert time.monotonic() - first_poll < stack.engine.adapters["hd"].settings.poll_interval
    finally:
        daemon.stop()
        runner.join(timeout=10)
    assert not runner.is_alive()


# ----- the schemes and payload parsers on their own ----------------------------------------------
def test_a_signed_front_setup_challenge_is_echoed_and_an_unsigned_one_refused(
    make_stack: Callable[..., Stack]
):
    """Front saves an application webhook only once the URL echoes the setup request's
    ``X-Front-Challenge`` (dev.frontapp.com/docs/application-webhooks); the request is signed
    like any event, so an unsigned one proves nothing and gets 401."""
    stack = make_stack(Vendor("front", FrontSimulator, lambda sim: 0, lambda sim, t: [],
                              "conversation_messages"))
    body = json.dumps({"type": "sync", "authorization": {"id": "cmp_abc"}}).encode()
    stamp = str(int(time.time() * 1000))
    digest = hmac.new(SECRET.encode(), stamp.encode() + b":" + body, hashlib.sha256).digest()
    headers = {"X-Front-Request-Timestamp": stamp, "X-Front-Challenge": "ch-7d2e91",
               "X-Front-Signature": base64.b64encode(digest).decode(),
               "Content-Type": "application/json"}

    answer = requests.post(stack.url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"challenge": "ch-7d2e91"}
    unsigned = {k: v for k, v in headers.items() if k != "X-Front-Signature"}
    refused = requests.post(stack.url, data=body, headers=unsigned, timeout=10)
    assert refused.status_code == 401 and "ch-7d2e91" not in refused.text
    assert stack.records() == []


def test_scheme_names_match_the_adapters_capabilities():
    assert isinstance(scheme_for("zendesk-hmac-sha256"), ZendeskSignature)
    assert isinstance(scheme_for("helpscout-hmac-sha1"), HelpScoutSignature)
    assert isinstance(scheme_for("zammad-hmac-sha1"), HubSignatureSha1)
    assert isinstance(scheme_for("shared-secret-header"), SharedSecretHeader)
    assert scheme_for(None) is None and scheme_for("tiny-hmac") is None


def test_zendesk_signature_covers_the_timestamp_too():
    # Vector computed with openssl: base64(HMAC-SHA256("secret", "2024-04-17T17:18:10Z{}")).
    scheme = ZendeskSignature(clock=lambda: datetime(2024, 4, 17, 17, 20, tzinfo=UTC).timestamp())
    headers = {"x-zendesk-webhook-signature-timestamp": "2024-04-17T17:18:10Z",
               "x-zendesk-webhook-signature": "3YV6Avm/tESEWw8ED2jKelhw90voJIU2usiN8o2ZurQ="}
    assert scheme.verify(b"secret", headers, b"{}")
    moved = {**headers, "x-zendesk-webhook-signature-timestamp": "2024-04-17T17:18:11Z"}
    assert not scheme.verify(b"secret", moved, b"{}")
    assert not scheme.verify(b"secret", headers, b"{ }")
    assert not scheme.verify(b"secret", {**headers, "x-zendesk-webhook-signature-timestamp":
                                         "yesterday"}, b"{}")


def test_hub_and_helpscout_signatures_use_their_own_encoding():
    # HMAC-SHA1("secret", "{}") computed with openssl: hex for Zammad's X-Hub-Signature,
    # base64 for Help Scout.
    hex_digest = "5d61605c3feea9799210ddcb71307d4ba264225f"
    assert HubSignatureSha1().verify(b"secret", {"x-hub-signature": f"sha1={hex_digest}"}, b"{}")
    assert not HubSignatureSha1().verify(b"secret", {"x-hub-signature": hex_digest}, b"{}")
    assert HelpScoutSignature().verify(
        b"secret", {"x-helpscout-signature": "XWFgXD/uqXmSEN3LcTB9S6JkIl8="}, b"{}")
    assert not HelpScoutSignature().verify(b"secret", {"x-helpscout-signature": "é"}, b"{}")


def _settings(adapter: type[Adapter], **extra: Any) -> Any:
    base: dict[str, Any] = {"name": "x", "url": "https://example.invalid"}
    if adapter is ZendeskAdapter:
        return ZendeskAdapter.settings_model(type="zendesk", auth={"access_token": "t" * 8},
                                             **base, **extra)
    return FreshdeskSettings(type="freshdesk", auth={"api_key": "k" * 8}, **base, **extra)


def test_zendesk_payloads_event_and_trigger_shapes():
    adapter = ZendeskAdapter(_settings(ZendeskAdapter, webhook_secret=SECRET))
    try:
        ids = adapter.webhook_ticket_ids
        assert ids({}, b'{"type": "zen:event-type:ticket.comment_added", "detail": {"id": "35"}}'
                   ) == ["35"]
        assert ids({}, b'{"type": "zen:event-type:user.active_changed", "detail": {"id": "9"}}'
                   ) == []
        assert ids({}, b'{"ticket_id": "35"}') == ["35"]  # the body a trigger is told to send
        with pytest.raises(WebhookPayloadError):
            ids({}, b'{"type": "zen:event-type:ticket.created", "detail": {}}')
        assert adapter.webhook_delivery_id({"x-zendesk-webhook-invocation-id": "i-1"}) == "i-1"
        assert adapter.accepts_webhooks()
    finally:
        adapter.close()


def test_freshdesk_payloads_and_a_secret_too_short_to_be_one():
    adapter = FreshdeskAdapter(_settings(FreshdeskAdapter, webhook_secret=SECRET))
    try:
        wrapped = b'{"freshdesk_webhook": {"ticket_id": 12, "ticket_subject": "x"}}'
        assert adapter.webhook_ticket_ids({}, wrapped) == ["12"]
        assert adapter.webhook_delivery_id({}) is None
    finally:
        adapter.close()
    with pytest.raises(ValueError, match="webhook_secret"):
        _settings(FreshdeskAdapter, webhook_secret="short")


def test_helpscout_and_zammad_payloads(make_stack: Callable[..., Stack]):
    hs = make_stack(VENDORS[1]).engine.adapters["hd"]
    assert hs.webhook_ticket_ids({"x-helpscout-event": "convo.deleted"}, b'{"id": 77}') == ["77"]
    assert hs.webhook_ticket_ids({"x-helpscout-event": "customer.created"}, b'{"id": 5}') == []
    assert hs.webhook_ticket_ids({"x-helpscout-event": "helpscout.test"}, b"{}") == []
    zammad = make_stack(VENDORS[2]).engine.adapters["hd"]
    assert zammad.webhook_ticket_ids({}, b'{"ticket": {"id": 8}, "article": {}}') == ["8"]
    with pytest.raises(WebhookPayloadError):
        zammad.webhook_ticket_ids({}, b'{"article": {"ticket_id": 8}}')


def test_ticket_ids_are_plain_numbers_only():
    assert ticket_id(42, "id") == "42" and ticket_id(" 42 ", "id") == "42"
    for bad in (True, 0, -1, 1.5, "4/2", "", None, "9" * 21):
        with pytest.raises(WebhookPayloadError):
            ticket_id(bad, "id")


def test_the_delivery_log_is_bounded_and_releases_failed_attempts():
    log = DeliveryLog(size=2)
    assert log.claim(("a", "1")) and log.claim(("a", "2"))
    assert not log.claim(("a", "1"))
    assert log.claim(("a", "3"))  # pushes out the least recently seen ("a", "2")
    assert log.claim(("a", "2"))
    log.release(("a", "2"))
    assert log.claim(("a", "2"))
