"""The conformance driver for Help Scout: plays customer, agents and faults on the simulator.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.helpscout.simulator import HelpScoutSimulator
from adapters.text import html_to_text
from connector.testing.conformance import PAGE_SIZE, SimulatorRateLimits, Unsupported

CUSTOMER_VISIBLE = frozenset({"customer", "message", "chat"})


class HelpScoutDriver(SimulatorRateLimits):
    """One customer, one human agent and the connector's app owner on a simulated account."""

    rate_limit_body = {"logRef": "rate-limit", "message": "Rate limit exceeded"}

    type_name = "helpscout"
    channels = ("email", "chat")

    def __init__(self, sim: HelpScoutSimulator) -> None:
        self.sim = sim
        self.customer = sim.add_customer("Carol", "Customer", email="carol@example.org")
        self.agent = sim.add_user("Agent", "Smith", email="smith@example.com")

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        """Help Scout's page size is fixed, so ``page_size`` is the simulator's, not a setting."""
        extra.pop("page_size", None)
        return {"name": name, "type": self.type_name, **self.sim.adapter_config(), **extra}

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "auth": {**settings["auth"], "app_secret": "not-the-secret"}}

    def settle(self) -> None:
        """The simulator lists changes at once (it is built with ``index_lag=0``)."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        return str(self.sim.create_conversation(
            self.customer, body, subject=subject, html=html, kind=channel or self.channels[0],
        ))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        conversation = int(ticket_id)
        if self.sim.conversations[conversation].type == "chat" and not html:
            self.sim.add_chat(conversation, body)
        else:
            self.sim.add_customer_reply(conversation, body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.add_reply(int(ticket_id), self.agent, body, status="pending")

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.add_note(int(ticket_id), self.agent, body)

    def system_event(self, ticket_id: str, body: str) -> None:
        """A workflow runs and sends a reply: a line item and a message sent by the workflow."""
        self.sim.run_workflow(int(ticket_id), "Auto-acknowledge", reply=body)

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "closed", user_id=self.agent)

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        raise Unsupported("Help Scout has no custom statuses: active, pending, closed, spam")

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "active", user_id=self.agent)

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self.sim.delete(int(ticket_id))
        elif how == "merged":
            target = self.sim.create_conversation(self.customer, "The one it was merged into")
            self.sim.merge(int(ticket_id), target)
        else:
            raise Unsupported(
                "Help Scout moves conversations only between mailboxes of one account, "
                "where they stay readable"
            )

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [
            html_to_text(thread["body"]) for thread in self.sim.threads(int(ticket_id))
            if thread["createdBy"]["id"] == self.sim.bot_user_id and "body" in thread
        ]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [
            html_to_text(thread["body"]) for thread in self.sim.threads(int(ticket_id))
            if thread["state"] == "published" and thread["type"] in CUSTOMER_VISIBLE
        ]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        self.sim.restrict(int(ticket_id))

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt(int(ticket_id))


@contextmanager
def open_driver() -> Iterator[HelpScoutDriver]:
    """A fresh simulator with the suite's small pages (Help Scout's own are 25); stopped on exit."""
    sim = HelpScoutSimulator(page_size=PAGE_SIZE)
    sim.start()
    try:
        yield HelpScoutDriver(sim)
    finally:
        sim.stop()
