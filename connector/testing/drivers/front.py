"""The conformance driver for Front: plays customer, teammates and faults on ``FrontSimulator``.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adapters.front.simulator import FrontSimulator
from adapters.text import html_to_text
from connector.testing.conformance import SimulatorDriver, Unsupported

RATE_LIMIT_BODY = {"_error": {"status": 429, "title": "Too many requests",
                              "message": "Rate limit exceeded"}}


class FrontDriver(SimulatorDriver):
    """One customer, one human teammate, a rule's bot and the connector's teammate."""

    wrong_auth = {"token": "not-the-token"}
    rate_limit_body = RATE_LIMIT_BODY

    type_name = "front"
    channels = ("email", "front_chat")

    def __init__(self, sim: FrontSimulator) -> None:
        self.sim = sim

    def settle(self) -> None:
        """The simulator lists every event at once."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        return self.sim.create_conversation("Carol Customer", body, subject=subject, html=html,
                                            kind=channel or self.channels[0])

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.sim.customer_writes(ticket_id, body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.teammate_replies(ticket_id, self.sim.agent, body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.comment(ticket_id, self.sim.agent, body)

    def system_event(self, ticket_id: str, body: str) -> None:
        """A rule sends an automatic reply: its author is the rule's bot teammate."""
        self.sim.teammate_replies(ticket_id, self.sim.rule, body)

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_status(ticket_id, "archived", "archive")

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        """Front ticketing: a company's own status in the resolved category."""
        self.sim.set_ticket_status(ticket_id, "sts_done_custom", "resolved")

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_status(ticket_id, "assigned", "reopen")

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            self.sim.set_status(ticket_id, "deleted", "trash")
        elif how == "merged":
            target = self.sim.create_conversation("Carol Customer", "The one it was merged into")
            self.sim.merge(ticket_id, target)
        else:
            raise Unsupported("Front moves conversations only between inboxes of one company, "
                              "where the API token still reads them")

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [html_to_text(entry.body) for entry in self.sim.conversations[ticket_id].entries
                if entry.author is not None and entry.author.id == self.sim.bot]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [html_to_text(entry.body) for entry in self.sim.conversations[ticket_id].entries
                if entry.kind == "message" and entry.draft_mode is None]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        self.sim.restrict(ticket_id)

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt(ticket_id)


@contextmanager
def open_driver() -> Iterator[FrontDriver]:
    """A fresh simulator; stopped on exit."""
    sim = FrontSimulator()
    sim.start()
    try:
        yield FrontDriver(sim)
    finally:
        sim.stop()
