"""The conformance driver for Zendesk: plays customer, agents and faults on ``ZendeskSimulator``.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adapters.zendesk.simulator import ZendeskSimulator
from connector.testing.conformance import SimulatorDriver, Unsupported

RATE_LIMIT_BODY = {
    "error": "APIRateLimitExceeded",
    "description": "Number of allowed API requests per minute exceeded",
}


class ZendeskDriver(SimulatorDriver):
    """One customer, one human agent and the connector's bot agent on a simulated account."""

    wrong_auth = {"api_token": "not-the-token"}
    rate_limit_body = RATE_LIMIT_BODY

    type_name = "zendesk"
    channels = ("web", "email")

    def __init__(self, sim: ZendeskSimulator) -> None:
        self.sim = sim
        self.customer = sim.add_user("Carol Customer", "end-user", "carol@example.org")
        self.agent = sim.add_user("Agent Smith", "agent", "smith@example.com")
        self._solved_custom: int | None = None

    def settle(self) -> None:
        """The simulator exports at once (it is built with ``exclude_newest=0``)."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        return str(self.sim.create_ticket(
            self.customer, body, subject=subject, via_channel=channel or self.channels[0],
            html=html,
        ))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.sim.add_comment(int(ticket_id), self.customer, body, via_channel="email", html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.add_comment(int(ticket_id), self.agent, body, public=True)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.add_comment(int(ticket_id), self.agent, body, public=False)

    def system_event(self, ticket_id: str, body: str) -> None:
        """A trigger's public message; Zendesk names the agent the trigger acts for as author."""
        self.sim.add_comment(int(ticket_id), self.agent, body, via_channel="rule")

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "solved")

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        if self._solved_custom is None:
            self._solved_custom = self.sim.add_custom_status("Solved by customer", "solved")
        self.sim.set_status(int(ticket_id), "solved", self._solved_custom)

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "open")

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self.sim.delete_ticket(int(ticket_id))
        elif how == "merged":
            target = self.sim.create_ticket(self.customer, "The ticket it was merged into")
            self.sim.merge_ticket(int(ticket_id), target, self.agent)
        else:
            raise Unsupported(f"Zendesk tickets are not {how}: they stay in the account")

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [
            c["body"] for c in self.sim.comments(int(ticket_id))
            if c["author_id"] == self.sim.bot_user_id
        ]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [c["body"] for c in self.sim.comments(int(ticket_id)) if c["public"]]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        self.sim.restrict_ticket(int(ticket_id))

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt_ticket(int(ticket_id))


@contextmanager
def open_driver() -> Iterator[ZendeskDriver]:
    """A fresh simulator (no export delay) and its driver; stopped on exit."""
    sim = ZendeskSimulator(exclude_newest=0)
    sim.start()
    try:
        yield ZendeskDriver(sim)
    finally:
        sim.stop()
