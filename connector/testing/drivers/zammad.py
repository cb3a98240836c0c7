"""The conformance driver for Zammad: plays customer, agents and faults on ``ZammadSimulator``.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.text import body_text
from adapters.zammad.simulator import ZammadSimulator
from connector.testing.conformance import SimulatorDriver, Unsupported

RATE_LIMIT_BODY = {"error": "Too Many Requests", "error_human": "Too Many Requests"}


class ZammadDriver(SimulatorDriver):
    """One customer, one human agent and the connector's bot agent on a simulated instance."""

    wrong_auth = {"token": "not-the-token"}
    rate_limit_body = RATE_LIMIT_BODY

    type_name = "zammad"
    channels = ("email", "web")

    def __init__(self, sim: ZammadSimulator) -> None:
        self.sim = sim
        self.customer = sim.add_user("Carol Customer", "customer", "carol@example.org")
        self.agent = sim.add_user("Agent Smith", "agent", "smith@example.com")
        self._solved_state: int | None = None
        self._hidden_group: int | None = None

    def settle(self) -> None:
        """Everything done so far reaches the search index, as it does after Zammad's lag."""
        self.sim.flush_index()

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        return str(self.sim.create_ticket(
            self.customer, body, title=subject, channel=channel or self.channels[0], html=html,
        ))

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self.sim.add_article(int(ticket_id), self.customer, body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self.sim.add_article(int(ticket_id), self.agent, body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self.sim.add_article(int(ticket_id), self.agent, body, internal=True)

    def system_event(self, ticket_id: str, body: str) -> None:
        """A trigger's auto-reply: a public article with sender System."""
        self.sim.add_system_article(int(ticket_id), body)

    def resolve(self, ticket_id: str) -> None:
        self.sim.set_state(int(ticket_id), "closed")

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        if self._solved_state is None:
            self._solved_state = self.sim.add_state("solved by customer", "closed")
        self.sim.set_state(int(ticket_id), self._solved_state)

    def reopen(self, ticket_id: str) -> None:
        self.sim.set_state(int(ticket_id), "open")

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        """Merging, Zammad's usual way a ticket goes away: it stays readable, state "merged".

        A deleted ticket leaves no trace in search or any other feed, so no poller can notice
        it (the adapter's tests cover the 404 it answers); tickets never move to another
        instance.
        """
        if how != "merged":
            raise Unsupported(
                "a deleted Zammad ticket vanishes from search and every other feed, so no "
                "poller can notice it" if how == "deleted"
                else f"Zammad tickets are not {how}: they never leave their instance"
            )
        target = self.sim.create_ticket(self.customer, "The ticket it was merged into")
        self.sim.merge_ticket(int(ticket_id), target, self.agent)

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        """Our notes and our unsent shared draft, as plain text."""
        return [
            body_text(html=_post_html(post))
            for post in self.sim.posts_by(self.sim.bot_user_id, int(ticket_id))
        ]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        return [
            a["body"] for a in self.sim.articles(int(ticket_id)) if a["internal"] is False
        ]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        """Move the ticket to a group the connector's user has no access to."""
        if self._hidden_group is None:
            self._hidden_group = self.sim.add_group("Management")
            self.sim.revoke_group(self.sim.bot_user_id, self._hidden_group)
        self.sim.set_group(int(ticket_id), self._hidden_group)

    def corrupt_ticket(self, ticket_id: str) -> None:
        self.sim.corrupt_ticket(int(ticket_id))


def _post_html(post: dict[str, Any]) -> str:
    """The HTML of an article or of a shared draft's reply."""
    body = post["new_article"].get("body", "") if post["kind"] == "draft" else post["body"]
    return body if isinstance(body, str) else ""


@contextmanager
def open_driver() -> Iterator[ZammadDriver]:
    """A fresh simulator and its driver; ``settle()`` stands in for the index lag."""
    sim = ZammadSimulator(index_lag=60.0)
    sim.start()
    try:
        yield ZammadDriver(sim)
    finally:
        sim.stop()
