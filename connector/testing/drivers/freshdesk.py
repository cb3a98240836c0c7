"""The conformance driver for Freshdesk: plays customer, agents and faults on its simulator.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.freshdesk.simulator import FreshdeskSimulator
from connector.testing.conformance import SimulatorRateLimits, Unsupported

RATE_LIMIT_BODY = {"message": "You have exceeded the limit of requests per minute"}
SOURCES = {"email": 1, "portal": 2, "phone": 3, "chat": 7}
RESOLVED_CUSTOM = "Resolved by customer"


class FreshdeskDriver(SimulatorRateLimits):
    """One customer, one human agent, an automation's user and the connector's bot agent.

    Freshdesk marks no message as automatic: automations and integrations post as agents. The
    driver's automation is such a user, and the settings it hands out name it in
    ``system_user_ids``, as a team would configure it.
    """

    rate_limit_body = RATE_LIMIT_BODY

    type_name = "freshdesk"
    channels = ("email", "portal")

    def __init__(self, sim: FreshdeskSimulator) -> None:
        self.sim = sim
        self.customer = sim.add_contact("Carol Customer", "carol@example.org")
        self.agent = sim.add_agent("Agent Smith", "smith@example.com")
        self.automation = sim.add_agent("Survey Automation", "survey@example.com")
        self._resolved_custom = sim.add_custom_status(RESOLVED_CUSTOM)

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name, "type": self.type_name, **self.sim.adapter_config(),
            "resolved_statuses": [RESOLVED_CUSTOM], "system_user_ids": [self.automation],
            "removed_check_interval": 0,  # the scenarios expect a removal seen at the next poll
            **extra,
        }

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "auth": {"api_key": "not-the-key"}}

    def settle(self) -> None:
        """The simulator's ticket list shows every change at once."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        source = SOURCES[channel or self.channels[0]]
        return str(self.sim.create_ticket(
            self.customer, body, subject=subject, html=html, source=source,
        ))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.sim.customer_reply(int(ticket_id), body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.add_conversation(int(ticket_id), self.agent, body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.add_conversation(int(ticket_id), self.agent, body, private=True)

    def system_event(self, ticket_id: str, body: str) -> None:
        """The automation's user replies publicly, as a survey or auto-reply integration does."""
        self.sim.add_conversation(int(ticket_id), self.automation, body)

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), 4)

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), self._resolved_custom)

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), 2)

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self.sim.delete_ticket(int(ticket_id))
        elif how == "merged":
            target = self.sim.create_ticket(self.customer, "The ticket it was merged into")
            self.sim.merge_ticket(int(ticket_id), target, self.agent)
        else:
            raise Unsupported(f"Freshdesk tickets are not {how}: they stay in the account")

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [
            c["body_text"] for c in self.sim.conversations(int(ticket_id))
            if c["user_id"] == self.sim.bot_agent_id
        ]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        ticket = self.sim.ticket_json(int(ticket_id))
        return [ticket["description_text"], *(
            c["body_text"] for c in self.sim.conversations(int(ticket_id)) if not c["private"]
        )]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        self.sim.restrict_ticket(int(ticket_id))

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt_ticket(int(ticket_id))


@contextmanager
def open_driver() -> Iterator[FreshdeskDriver]:
    """A fresh simulator and its driver; stopped on exit."""
    sim = FreshdeskSimulator()
    sim.start()
    try:
        yield FreshdeskDriver(sim)
    finally:
        sim.stop()
