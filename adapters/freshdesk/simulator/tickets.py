"""The tickets' state and the Python API that tests and the sandbox change it with."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from adapters.freshdesk.simulator.records import (
    _TIME_FORMAT,
    NOTE,
    REPLY,
    SOURCES,
    STATUSES,
    _Conversation,
    _markup,
    _Ticket,
)
from adapters.text import html_to_text


class FreshdeskTickets:
    """Tickets and their conversations as contacts, agents and automations change them; callers
    of the underscored helpers hold ``self.lock``."""

    def freeze_time(self, at: datetime | None) -> None:
        """Stamp every change with ``at`` (None: the real clock again)."""
        with self.lock:
            self._frozen = None if at is None else at.timestamp()

    def _now(self) -> str:
        now = self._frozen if self._frozen is not None else time.time()
        return datetime.fromtimestamp(now, UTC).strftime(_TIME_FORMAT)

    def add_custom_status(self, name: str) -> int:
        """A custom status (ids from 6 on), listed among the status field's choices."""
        with self.lock:
            status_id = next(self._status_ids)
            self.custom_statuses[status_id] = name
        return status_id

    def create_ticket(
        self,
        requester_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        html: bool = False,
        source: int = 1,
        tags: tuple[str, ...] | list[str] = (),
        group_id: int | None = None,
        product_id: int | None = None,
        created_at: datetime | None = None,
    ) -> int:
        """A new ticket; ``body`` becomes its description (HTML when ``html``).

        ``created_at`` backdates the ticket (creation and last update), e.g. beyond the list's
        30-day default window.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        with self.lock:
            self._contact(requester_id)
            ticket_id = next(self._ticket_ids)
            stamp = created_at.astimezone(UTC).strftime(_TIME_FORMAT) if created_at \
                else self._now()
            markup, text = (body, html_to_text(body)) if html else (_markup(body), body)
            self.tickets[ticket_id] = _Ticket(
                ticket_id, subject, markup, text, 2, source, requester_id, group_id, product_id,
                list(dict.fromkeys(tags)), stamp, stamp,
            )
        return ticket_id

    def add_conversation(
        self,
        ticket_id: int,
        user_id: int,
        body: str,
        *,
        private: bool = False,
        incoming: bool | None = None,
        source: int | None = None,
        html: bool = False,
    ) -> int:
        """A reply or note as someone else would add it (mail, agent UI, automation).

        ``incoming`` defaults to True for contacts, as for mail coming in from outside;
        ``source`` defaults to a note when ``private``, else a reply. A contact's public entry
        reopens a Resolved or Closed ticket, as Freshdesk does by default.
        """
        with self.lock:
            ticket = self._live(ticket_id)
            author = self._contact(user_id)
            if incoming is None:
                incoming = not author.agent
            entry = self._add(ticket, user_id, body, html=html, private=private,
                              incoming=incoming, source=NOTE if private else REPLY)
            if source is not None:
                entry.source = source
            if not private and not author.agent and ticket.status in (4, 5):
                ticket.status = 2
        return entry.id

    def customer_reply(self, ticket_id: int, body: str, *, html: bool = False) -> int:
        """The requester answers by mail."""
        with self.lock:
            requester = self.tickets[ticket_id].requester_id
        return self.add_conversation(ticket_id, requester, body, html=html)

    def set_status(self, ticket_id: int, status: int) -> None:
        with self.lock:
            if status not in STATUSES and status not in self.custom_statuses:
                raise ValueError(f"no status {status}")
            ticket = self._live(ticket_id)
            ticket.status = status
            ticket.updated_at = self._now()

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            ticket.updated_at = self._now()

    def mark_spam(self, ticket_id: int) -> None:
        """Spam: gone from the ticket list, still viewable with ``spam: true``."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.spam = True
            ticket.updated_at = self._now()

    def delete_ticket(self, ticket_id: int) -> None:
        """Moved to trash: gone from the ticket list, still viewable with ``deleted: true``."""
        with self.lock:
            ticket = self._live(ticket_id)
            ticket.deleted = True
            ticket.updated_at = self._now()

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Freshdesk does: both tickets get the agent's private note, the source is
        closed and stays viewable."""
        with self.lock:
            source, target = self._live(source_id), self._live(target_id)
            for ticket, text in (
                (source, f"This ticket is closed and merged into ticket {target_id}"),
                (target, f"Ticket {source_id} was merged into this ticket"),
            ):
                self._add(ticket, agent_id, text, html=False, private=True, incoming=False,
                          source=NOTE)
            source.status = 5

    def restrict_ticket(self, ticket_id: int) -> None:
        """From now on the ticket is outside our agent's scope (e.g. another group): reading or
        writing it answers 403 and the ticket list leaves it out."""
        with self.lock:
            self.restricted.add(ticket_id)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """From now on the ticket's conversations start with an entry without a usable id,
        time or body, as a broken integration can leave behind."""
        with self.lock:
            self.corrupted.add(ticket_id)

    def purge_ticket(self, ticket_id: int) -> None:
        """Deleted forever: every endpoint answers 404 for it."""
        with self.lock:
            del self.tickets[ticket_id]

    def conversations(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's conversations as the API serves them, oldest first."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            return [self._conversation_json(ticket, c) for c in ticket.conversations]

    def notes_by(self, user_id: int) -> list[dict[str, Any]]:
        """Notes written by ``user_id`` on any ticket, each with its ``ticket_id``."""
        with self.lock:
            return [
                self._conversation_json(t, c) for t in self.tickets.values()
                for c in t.conversations if c.user_id == user_id and c.source == NOTE
            ]

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as the view endpoint serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id], description=True)

    def _live(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets[ticket_id]
        if ticket.deleted:
            raise KeyError(f"ticket {ticket_id} is deleted")
        return ticket

    def _add(
        self, ticket: _Ticket, user_id: int, body: str, *, html: bool, private: bool,
        incoming: bool, source: int,
    ) -> _Conversation:
        markup, text = (body, html_to_text(body)) if html else (_markup(body), body)
        entry = _Conversation(next(self._ids), user_id, markup, text, incoming, private, source,
                              self._now())
        ticket.conversations.append(entry)
        ticket.updated_at = entry.created_at  # any activity counts as an update
        return entry

    # The play API of ``connector sandbox`` (see Simulator.seed_ticket); customer_reply is the
    # one above.
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        return self.create_ticket(self.add_contact(customer, self.play_email(customer)), body,
                                  subject=subject)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        return self.add_conversation(ticket_id, self.play_agent(self.add_agent), body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, 4)
