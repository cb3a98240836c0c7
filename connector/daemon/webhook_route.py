"""Push webhooks from helpdesks: ``POST /webhooks/<adapter name>`` on the ops listener.

A webhook only shortens the wait: it marks the tickets it names for an immediate re-read and
starts due work at once. Polling stays the source of truth, so a lost, refused or duplicated
delivery costs latency or one extra read, never a message. Nothing from the payload is trusted
beyond the ticket id; the conversation is read back from the helpdesk's API.

Outcomes: 404 for an adapter without a webhook (unknown, no scheme, or no ``webhook_secret``),
401 for a bad signature (nothing processed), 400 for a signed body that names no ticket, 413
for an oversized body (the ops server refuses it unread), 202 once the tickets are marked, and
200 for a delivery seen before or for a signed setup challenge (echoed as the vendor asks).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from adapters.base import Adapter
from connector.core.errors import WebhookPayloadError
from connector.daemon.ops_server import OpsRequest, OpsResponse
from connector.engine.ingest import mark_ticket

if TYPE_CHECKING:
    from connector.daemon.ops import Ops
    from connector.engine.runtime import Runtime

log = logging.getLogger(__name__)

ROUTE = "/webhooks/<adapter>"
MAX_TICKETS_PER_DELIVERY = 100
"""A payload naming more tickets than this is refused: no helpdesk batches that many, and each
id costs a remote read."""

SEEN_DELIVERIES = 10_000
"""Delivery ids remembered per process. Vendors retry within minutes, so the newest few
thousand cover every retry; with several instances a duplicate reaching another one costs one
extra re-read, which the message-id dedupe makes harmless."""


class DeliveryLog:
    """A bounded, thread-safe set of recently processed delivery ids, oldest dropped first."""

    def __init__(self, size: int = SEEN_DELIVERIES) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, str]) -> bool:
        """True if ``key`` is new (and now taken); False for a duplicate."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True

    def release(self, key: tuple[str, str]) -> None:
        """Forget ``key`` after a failed attempt, so the vendor's retry is processed."""
        with self._lock:
            self._seen.pop(key, None)


class WebhookReceiver:
    """The route handler; one per engine, shared by every adapter's route."""

    def __init__(self, engine: Runtime, deliveries: DeliveryLog | None = None) -> None:
        self.engine = engine
        self.deliveries = deliveries or DeliveryLog()

    def __call__(self, request: OpsRequest, adapter: str) -> OpsResponse:
        target = self.engine.adapters.get(adapter)
        if target is None or not target.accepts_webhooks():
            return OpsResponse(404, "not found\n")
        if not target.verify_webhook(request.headers, request.body):
            log.warning("webhook for adapter %s refused: missing or invalid signature", adapter)
            return self._answer(adapter, "refused", OpsResponse(401, "invalid signature\n"))
        challenge = target.webhook_challenge(request.headers)
        if challenge is not None:
            log.info("webhook for adapter %s: setup challenge answered", adapter)
            return self._answer(adapter, "challenge", OpsResponse(200, challenge))
        try:
            ids = target.webhook_ticket_ids(request.headers, request.body)
        except WebhookPayloadError as exc:
            log.warning("webhook for adapter %s refused: %s", adapter, exc)
            return self._answer(adapter, "malformed", OpsResponse(400, f"{exc}\n"))
        if len(ids) > MAX_TICKETS_PER_DELIVERY:
            log.warning("webhook for adapter %s refused: %d tickets in one delivery", adapter,
                        len(ids))
            return self._answer(adapter, "malformed", OpsResponse(400, "too many tickets\n"))
        delivery = target.webhook_delivery_id(request.headers)
        key = (adapter, delivery) if delivery else None
        if key is not None and not self.deliveries.claim(key):
            log.debug("webhook for adapter %s: delivery %s already processed", adapter, delivery)
            return self._answer(adapter, "duplicate", OpsResponse(200, {"duplicate": True}))
        try:
            self._mark(target, ids)
        except Exception:
            if key is not None:
                self.deliveries.release(key)
            raise  # the ops server answers 500; the helpdesk retries
        return self._answer(adapter, "accepted" if ids else "ignored",
                            OpsResponse(202, {"tickets": ids}))

    def _mark(self, adapter: Adapter, ids: list[str]) -> None:
        """Mark every named ticket, then start the reads now instead of at the next tick."""
        for ticket_id in dict.fromkeys(ids):
            mark_ticket(self.engine, adapter.name, ticket_id)
        if ids:
            log.info("webhook for adapter %s: re-reading ticket(s) %s", adapter.name,
                     ", ".join(ids))
            self.engine.dispatch()

    def _answer(self, adapter: str, outcome: str, response: OpsResponse) -> OpsResponse:
        self.engine.emit("webhook", adapter=adapter, outcome=outcome)
        return response


def register_webhooks(ops: Ops, engine: Runtime) -> WebhookReceiver | None:
    """Add ``POST /webhooks/<adapter>`` to the ops server; None when no server runs.

    Adapters without a scheme or without ``webhook_secret`` still answer 404, so the route is
    harmless when no adapter opts in.
    """
    if ops.server is None:
        return None
    for name, adapter in engine.adapters.items():
        if adapter.settings.webhook_secret is not None and adapter.webhook_scheme() is None:
            log.warning("adapter %s: webhook_secret is set but %s adapters have no webhooks; "
                        "it is ignored", name, adapter.type_name)
        elif adapter.accepts_webhooks():
            log.info("adapter %s: webhooks accepted at %s/webhooks/%s", name, ops.server.url,
                     name)
    receiver = WebhookReceiver(engine)
    ops.server.route("POST", ROUTE, receiver)
    return receiver
