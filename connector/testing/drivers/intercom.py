"""The conformance driver for Intercom: plays contacts, teammates, Fin and faults on the simulator.

``open_driver()`` is what ``tests/conformance`` looks for (see ``connector.testing.conformance``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from adapters.intercom.simulator import IntercomSimulator
from adapters.text import html_to_text
from connector.testing.conformance import SimulatorDriver, Unsupported


class IntercomDriver(SimulatorDriver):
    """One contact, one human teammate and Fin on a simulated workspace."""

    wrong_auth = {"access_token": "not-a-token"}
    rate_limit_body = {"type": "error.list", "errors": [
        {"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 1667 in 10_seconds"}]}

    type_name = "intercom"
    channels = ("conversation", "email")  # Messenger and e-mail, as ``source.type`` says

    def __init__(self, sim: IntercomSimulator) -> None:
        self.sim = sim
        with sim.lock:
            self.contact = sim.workspace.add_contact("Carol Customer", "carol@example.org")
            self.agent = sim.workspace.add_admin("Agent Smith", "smith@example.com")
            self.fin = sim.workspace.add_admin("Fin", "fin@example.com", kind="bot")

    def settle(self) -> None:
        """The simulator's search sees every change at once."""

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        with self.sim.lock:
            return self.sim.workspace.open_conversation(
                self.contact, body, subject=subject, html=html,
                source_type=channel or self.channels[0])

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        self._add(ticket_id, self.contact, "comment", body, html=html)

    def agent_reply(self, ticket_id: str, body: str) -> None:
        self._add(ticket_id, self.agent, "comment", body)

    def internal_note(self, ticket_id: str, body: str) -> None:
        self._add(ticket_id, self.agent, "note", body)

    def system_event(self, ticket_id: str, body: str) -> None:
        """Fin answers in the conversation, then hands it to the team (an assignment)."""
        self._add(ticket_id, self.fin, "comment", body)
        self._add(ticket_id, self.fin, "assignment", None)

    def resolve(self, ticket_id: str) -> None:
        with self.sim.lock:
            self.sim.workspace.set_state(ticket_id, self.agent, "closed")

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        raise Unsupported("Intercom conversations have no custom states: open, closed, snoozed")

    def reopen(self, ticket_id: str) -> None:
        with self.sim.lock:
            self.sim.workspace.set_state(ticket_id, self.agent, "open")

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        if how == "deleted":
            raise Unsupported(
                "Intercom deletes a conversation permanently: it leaves the search and answers "
                "404, so no change feed can report it as resolved")
        raise Unsupported(f"Intercom's API has no way to have a conversation {how}: "
                          "conversations are neither merged nor moved between workspaces")

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        return [html_to_text(body)
                for body in self.sim.parts_by(ticket_id, self.sim.bot_admin_id, "note")]

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        with self.sim.lock:
            conversation = self.sim.workspace.conversations[ticket_id]
            bodies = [conversation.body] + [
                part.body or "" for part in conversation.parts if part.part_type == "comment"]
        return [html_to_text(body) for body in bodies]

    # ----- faults -------------------------------------------------------------------------
    def deny_access(self, ticket_id: str) -> None:
        with self.sim.lock:
            self.sim.workspace.conversations[ticket_id].restricted = True

    def corrupt_ticket(self, ticket_id: str) -> None:
        with self.sim.lock:
            self.sim.workspace.conversations[ticket_id].corrupt = True

    def _add(self, ticket_id: str, author: str, part_type: str, body: str | None, *,
             html: bool = False) -> None:
        with self.sim.lock:
            self.sim.workspace.add_part(ticket_id, author, part_type, body, html=html)


@contextmanager
def open_driver() -> Iterator[IntercomDriver]:
    """A fresh simulator with the suite's small pages; stopped on exit."""
    sim = IntercomSimulator()
    sim.start()
    try:
        yield IntercomDriver(sim)
    finally:
        sim.stop()
