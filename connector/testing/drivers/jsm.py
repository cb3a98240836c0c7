"""The conformance driver for JSM Cloud: plays customer, agents, automation and faults on
``JsmSimulator``.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adapters.jsm.simulator import JsmSimulator
from connector.testing.conformance import SimulatorDriver, Unsupported

RATE_LIMIT_BODY = {"errorMessages": ["Rate limit exceeded."], "errors": {}}


class JsmDriver(SimulatorDriver):
    """A portal customer, a human agent, Automation for Jira and the connector's own agent."""

    wrong_auth = {"api_token": "not-the-token"}
    rate_limit_body = RATE_LIMIT_BODY

    type_name = "jsm"
    channels = ("portal",)

    def __init__(self, sim: JsmSimulator) -> None:
        self.sim = sim
        self.customer = sim.add_account("Carol Customer", "customer", "carol@example.org")
        self.agent = sim.add_account("Agent Smith", "atlassian", "smith@example.com", agent=True)
        self.automation = sim.add_account("Automation for Jira", "app", "automation@example.com")

    def settle(self) -> None:
        """The simulator indexes at once (it is built with ``index_lag=0``)."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        return str(self.sim.create_request(self.customer, body, subject, html=html))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.sim.add_comment(int(ticket_id), self.customer, body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.add_comment(int(ticket_id), self.agent, body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.add_comment(int(ticket_id), self.agent, body, public=False)

    def system_event(self, ticket_id: str, body: str) -> None:
        """An Automation for Jira rule comments publicly; it acts as an ``app`` account."""
        self.sim.add_comment(int(ticket_id), self.automation, body)

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "Resolved")

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "Canceled")  # a workflow's own Done-category status

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_status(int(ticket_id), "Waiting for support")

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        reasons = {
            "deleted": "Jira's search never lists a deleted issue and the REST API has no feed "
                       "of deletions; the engine learns of one when its read answers 404",
            "merged": "Jira has no merge of issues",
            "moved": "a moved issue keeps its id and stays readable wherever the account may "
                     "see it (out of sight it answers 404, as in forbidden_ticket)",
        }
        raise Unsupported(reasons[how])

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [c["body"] for c in self.sim.comments(int(ticket_id)) if c["author"] == self.sim.bot]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [c["body"] for c in self.sim.comments(int(ticket_id)) if c["public"]]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        self.sim.hide(int(ticket_id))

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt(int(ticket_id))


@contextmanager
def open_driver() -> Iterator[JsmDriver]:
    """A fresh simulator (no index lag) and its driver; stopped on exit."""
    sim = JsmSimulator()
    sim.start()
    try:
        yield JsmDriver(sim)
    finally:
        sim.stop()
