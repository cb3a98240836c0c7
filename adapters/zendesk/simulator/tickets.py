"""The tickets' state and the Python API that tests and the sandbox change it with."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from adapters.text import html_to_text
from adapters.zendesk.simulator.records import (
    CATEGORIES,
    STATUSES,
    SUPPORT_TYPES,
    _Comment,
    _iso,
    _Ticket,
    _via,
)


class ZendeskTickets:
    """Tickets, comments and statuses as agents, customers and triggers change them; callers of
    the underscored helpers hold ``self.lock``."""

    def set_support_type(self, ticket_id: int, support_type: str) -> None:
        """Hand the ticket to an AI agent (``ai_agent``) or back to people (``agent``)."""
        if support_type not in SUPPORT_TYPES:
            raise ValueError(f"support_type must be one of {SUPPORT_TYPES}")
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.support_type = support_type
            self._touch(ticket)

    def add_custom_status(self, agent_label: str, status_category: str) -> int:
        if status_category not in CATEGORIES:
            raise ValueError(f"status_category must be one of {CATEGORIES}")
        with self.lock:
            status_id = next(self._ids)
            now = _iso(self._stamp())
            self.custom_statuses[status_id] = {
                "id": status_id, "agent_label": agent_label, "end_user_label": agent_label,
                "status_category": status_category, "active": True,
                "default": status_category not in self._default_status,
                "description": "", "created_at": now, "updated_at": now,
            }
        return status_id

    def create_ticket(
        self,
        requester_id: int,
        body: str,
        *,
        subject: str = "Help needed",
        tags: tuple[str, ...] | list[str] = (),
        group_id: int | None = None,
        brand_id: int | None = None,
        via_channel: str = "email",
        html: bool = False,
    ) -> int:
        """A new ticket; its description is the first public comment, by the requester.

        ``html=True`` takes ``body`` as HTML, served with ``html_body`` only (as ``add_comment``).
        """
        with self.lock:
            ticket_id = next(self._ticket_ids)
            ticket = _Ticket(
                ticket_id, subject, "new", self._default_status.get("new"), requester_id,
                group_id, brand_id, list(dict.fromkeys(tags)), _via(via_channel),
                _iso(self._stamp()),
            )
            self.tickets[ticket_id] = ticket
            self._new_comment(
                ticket, requester_id, None if html else body, body if html else None,
                public=True, via=_via(via_channel), html_only=html,
            )
            self._touch(ticket)
        return ticket_id

    def add_comment(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        *,
        public: bool = True,
        via_channel: str | None = None,
        via_rel: str | None = None,
        html: bool = False,
    ) -> int:
        """Add a comment as someone else would (agent UI, mail, trigger).

        ``via_channel="rule"`` marks trigger output (``via_rel`` defaults to "trigger").
        ``html=True`` takes ``body`` as HTML and serves the comment with ``html_body`` only.
        A requester's public reply reopens a pending or solved ticket, as in Zendesk.
        """
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            if ticket.status == "closed":
                raise ValueError("closed tickets cannot take comments")
            rel = via_rel or ("trigger" if via_channel == "rule" else None)
            comment = self._new_comment(
                ticket, author_id, None if html else body, body if html else None,
                public=public, via=_via(via_channel or "web", rel), html_only=html,
            )
            author = self.users.get(author_id)
            if public and author and author.role == "end-user" and ticket.status in (
                "pending", "solved",
            ):
                self._set_status(ticket, "open", None)
            self._touch(ticket)
        return comment.id

    def set_status(self, ticket_id: int, status: str, custom_status_id: int | None = None) -> None:
        """Set the status; without ``custom_status_id`` the category's default is used."""
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            self._set_status(ticket, status, custom_status_id)
            self._touch(ticket)

    def add_tags(self, ticket_id: int, *tags: str) -> None:
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.tags = list(dict.fromkeys([*ticket.tags, *tags]))
            self._touch(ticket)

    def delete_ticket(self, ticket_id: int) -> None:
        """Soft delete: gone from the API, exported once more with status "deleted"."""
        with self.lock:
            ticket = self._live_ticket(ticket_id)
            ticket.status = "deleted"
            self._touch(ticket)

    def merge_ticket(self, source_id: int, target_id: int, agent_id: int) -> None:
        """Merge as Zendesk does: both tickets get the agent's private comment, the source is
        closed."""
        with self.lock:
            source, target = self._live_ticket(source_id), self._live_ticket(target_id)
            for ticket, text in (
                (source, f"Request #{source_id} was closed and merged into request #{target_id}."),
                (target, f"Request #{source_id} was merged into this request."),
            ):
                self._new_comment(ticket, agent_id, text, None, public=False, via=_via("merge"))
                self._touch(ticket)
            self._set_status(source, "closed", None)

    def restrict_ticket(self, ticket_id: int) -> None:
        """From now on reading or updating the ticket answers 403, as for a ticket moved to a
        group the agent may not see; the export still lists it."""
        with self.lock:
            self.restricted.add(ticket_id)

    def corrupt_ticket(self, ticket_id: int) -> None:
        """From now on the ticket's comment listing starts with an entry without a usable id,
        time or body, as a broken integration can leave behind."""
        with self.lock:
            self.corrupted.add(ticket_id)

    def comments(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's comments as the API serves them, oldest first."""
        with self.lock:
            return [self._comment_json(c) for c in self.tickets[ticket_id].comments]

    def notes_by(self, user_id: int) -> list[dict[str, Any]]:
        """Private comments written by ``user_id`` on any ticket, each with its ``ticket_id``."""
        with self.lock:
            return [
                {**self._comment_json(c), "ticket_id": t.id}
                for t in self.tickets.values() for c in t.comments
                if c.author_id == user_id and not c.public
            ]

    def ticket_json(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as the API serves it, e.g. to build a custom answer for a Fault."""
        with self.lock:
            return self._ticket_json(self.tickets[ticket_id])

    def _stamp(self) -> int:
        """Nanoseconds now, strictly increasing, so every change sorts after all earlier ones."""
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    def _touch(self, ticket: _Ticket) -> None:
        ticket.stamp = self._stamp()
        ticket.updated_at = _iso(ticket.stamp)

    def _live_ticket(self, ticket_id: int) -> _Ticket:
        ticket = self.tickets[ticket_id]
        if ticket.status == "deleted":
            raise KeyError(f"ticket {ticket_id} is deleted")
        return ticket

    def _set_status(self, ticket: _Ticket, status: str, custom_status_id: int | None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if custom_status_id is not None and custom_status_id not in self.custom_statuses:
            raise KeyError(f"no custom status {custom_status_id}")
        category = "solved" if status == "closed" else status
        ticket.status = status
        ticket.custom_status_id = custom_status_id or self._default_status.get(category)

    def _new_comment(
        self, ticket: _Ticket, author_id: int, text: str | None, markup: str | None, *,
        public: bool, via: dict[str, Any], html_only: bool = False,
    ) -> _Comment:
        """Store a comment; like Zendesk, derive the text from HTML or the HTML from text."""
        if text is None:
            text = html_to_text(markup or "")
        if markup is None:
            markup = '<div class="zd-comment" dir="auto"><p>{}</p></div>'.format(
                escape(text).replace("\n", "<br>")
            )
        comment = _Comment(
            next(self._ids), author_id, text, markup, public, via, _iso(self._stamp()),
            next(self._ids), html_only,
        )
        ticket.comments.append(comment)
        return comment

    # The play API of ``connector sandbox`` (see Simulator.seed_ticket).
    def seed_ticket(self, customer: str, subject: str, body: str) -> int:
        requester = self.add_user(customer, "end-user", self.play_email(customer))
        return self.create_ticket(requester, body, subject=subject)

    def customer_reply(self, ticket_id: int, body: str) -> int:
        with self.lock:
            requester = self._live_ticket(ticket_id).requester_id
        return self.add_comment(ticket_id, requester, body)

    def agent_reply(self, ticket_id: int, body: str) -> int:
        agent = self.play_agent(lambda name, email: self.add_user(name, "agent", email))
        return self.add_comment(ticket_id, agent, body)

    def resolve(self, ticket_id: int) -> None:
        self.set_status(ticket_id, "solved")
