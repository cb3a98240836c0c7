"""What the conformance suite needs of a helpdesk: the ``HelpdeskDriver`` a driver module provides,
and the pieces drivers share with the scenarios.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from adapters.simulation import Fault


class Unsupported(Exception):
    """The helpdesk has no such thing (e.g. custom statuses); the scenario is skipped."""


class SimulatorRateLimits:
    """The two rate-limit fault methods of a driver whose helpdesk is a ``Simulator``.

    Subclasses set ``sim`` (the simulator, or a fault proxy in front of a real server) and
    ``rate_limit_body`` (the vendor's 429 body); the simulator adds the vendor's own headers.
    """

    sim: Any
    rate_limit_body: Any = None
    _calls_mark = 0

    def rate_limit_next(self, times: int, retry_after: float) -> None:
        with self.sim.lock:
            self._calls_mark = len(self.sim.calls)
        self.sim.add_fault(Fault(
            status=429, retry_after=retry_after, times=times, body=self.rate_limit_body,
        ))

    def calls_since_rate_limit(self) -> list[float]:
        with self.sim.lock:
            return [call.at for call in self.sim.calls[self._calls_mark:]]


class SimulatorDriver(SimulatorRateLimits):
    """What a driver on a bundled simulator does the same way as the others: settings from the
    simulator's own config, and wrong credentials made by replacing ``wrong_auth``'s keys."""

    type_name: str
    wrong_auth: dict[str, str]

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": self.type_name, **self.sim.adapter_config(), **extra}

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings, "auth": {**settings["auth"], **self.wrong_auth}}


REMOVALS = ("deleted", "merged", "moved")


@runtime_checkable
class HelpdeskDriver(Protocol):
    """Plays the humans and the faults around one helpdesk. Ticket ids are strings.

    Every method may raise ``Unsupported`` when the helpdesk (or this test setup) has no such
    thing; the scenarios that need it are then skipped with the exception's text as reason.
    Bodies are matched by the suite as substrings of the adapter's clean text, so drivers pass
    them on unchanged (HTML bodies as HTML).
    """

    type_name: str  # the adapter's YAML ``type``
    channels: tuple[str, ...]  # how a customer can open a ticket ("web", "email"...); [0] default

    def adapter_settings(self, name: str, **extra: Any) -> dict[str, Any]:
        """The adapter's YAML section (as a dict, with ``name`` and ``type``) for this helpdesk.

        ``extra`` may carry ``page_size`` (the suite asks for small pages to cross page
        boundaries; drivers of adapters without such a setting drop it) and ``start_from``;
        other keys are passed through.
        """
        ...

    def wrong_credentials(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The same settings with credentials the helpdesk answers with 401."""
        ...

    def settle(self) -> None:
        """Return once everything done so far is visible to the change feed.

        Simulators: nothing to do (or skip an exclusion window). Real helpdesks whose search is
        eventually consistent wait here, boundedly.
        """
        ...

    # ----- people -------------------------------------------------------------------------
    def create_ticket(
        self, body: str, *, html: bool = False, subject: str = "Help", channel: str | None = None
    ) -> str:
        """The customer opens a ticket through ``channel`` (default ``channels[0]``); the first
        message lives wherever the vendor keeps it (description, first thread, Create...)."""
        ...

    def customer_reply(self, ticket_id: str, body: str, *, html: bool = False) -> None:
        """The ticket's customer writes again, publicly."""
        ...

    def agent_reply(self, ticket_id: str, body: str) -> None:
        """A human agent (not the connector's user) answers publicly."""
        ...

    def internal_note(self, ticket_id: str, body: str) -> None:
        """A human agent (not the connector's user) writes a private note."""
        ...

    def system_event(self, ticket_id: str, body: str) -> None:
        """Automation acts on the ticket: a trigger/autoreply message carrying ``body`` where the
        helpdesk has them, else an automatic event (its text need not contain ``body``)."""
        ...

    def resolve(self, ticket_id: str) -> None:
        """An agent resolves the ticket with the helpdesk's standard resolved status."""
        ...

    def resolve_with_custom_status(self, ticket_id: str) -> None:
        """Resolve through a custom status in the resolved category; Unsupported if none."""
        ...

    def reopen(self, ticket_id: str) -> None:
        """An agent sets the ticket back to an open status."""
        ...

    def remove_ticket(self, ticket_id: str, how: str) -> None:
        """``how`` in ``REMOVALS``: delete, merge into another ticket, or move the ticket away
        (another mailbox/queue/account). The API answers 404 or 301 for it from then on, or
        shows it in a resolved state, as the vendor really does."""
        ...

    # ----- what happened ------------------------------------------------------------------
    def posts_by_connector(self, ticket_id: str) -> list[str]:
        """Bodies of the drafts/notes the connector's user wrote on the ticket, oldest first,
        as plain text."""
        ...

    def visible_to_customer(self, ticket_id: str) -> list[str]:
        """Bodies the customer can see on the ticket (to prove our drafts/notes are not)."""
        ...

    # ----- faults -------------------------------------------------------------------------
    def rate_limit_next(self, times: int, retry_after: float) -> None:
        """The next ``times`` API calls get 429 with the vendor's rate-limit headers saying to
        wait ``retry_after`` seconds (a whole number of seconds is asked for)."""
        ...

    def calls_since_rate_limit(self) -> list[float]:
        """Monotonic times of the API calls made since ``rate_limit_next``, 429s included."""
        ...

    def deny_access(self, ticket_id: str) -> None:
        """From now on the API answers 403 for this ticket (e.g. moved to a group our user may
        not see)."""
        ...

    def corrupt_ticket(self, ticket_id: str) -> None:
        """From now on the ticket's data is malformed where this vendor carries it: its item in
        the change feed, or its conversation (a message without id, a body of the wrong type)."""
        ...


PAGE_SIZE = 2  # small pages, so a handful of tickets crosses several page boundaries
