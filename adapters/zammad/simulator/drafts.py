"""Shared drafts: the one draft a ticket of a group that allows them can hold, and its endpoints."""

from __future__ import annotations

from html import escape
from typing import Any

from adapters.simulation import SimRequest, SimResponse
from adapters.zammad.simulator.records import _Draft, _iso, _Ticket


class ZammadDrafts:
    """Writing, reading and sending a ticket's shared draft, from tests and over HTTP."""

    def write_shared_draft(self, ticket_id: int, agent_id: int, body: str) -> int:
        """A human agent saves (or overwrites) the ticket's shared draft."""
        with self.lock:
            ticket = self._live(ticket_id)
            return self._save_draft(ticket, agent_id, {
                "body": escape(body), "content_type": "text/html", "type": "email",
                "internal": False,
            }, {}).id

    def send_shared_draft(self, ticket_id: int, agent_id: int) -> int:
        """An agent applies the shared draft and sends it: a public reply, the draft is gone."""
        with self.lock:
            ticket = self._live(ticket_id)
            draft = ticket.draft
            if draft is None:
                raise KeyError(f"ticket {ticket_id} has no shared draft")
            new = draft.new_article
            article = self._new_article(
                ticket, agent_id, str(new.get("body", "")), sender="Agent",
                type_=str(new.get("type") or "email"), internal=new.get("internal") is True,
                html=str(new.get("content_type", "text/html")) == "text/html",
            )
            ticket.draft = None
            self._touch(ticket, agent_id)
        return article.id

    def shared_draft(self, ticket_id: int) -> dict[str, Any] | None:
        """The ticket's shared draft as the API serves it, or None."""
        with self.lock:
            ticket = self.tickets[ticket_id]
            return self._draft_json(ticket, ticket.draft) if ticket.draft else None

    def handle_shared_draft_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._writable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            draft = found.draft
            return SimResponse(200, {
                "shared_draft_id": draft.id if draft else None,
                "assets": self._draft_assets(found, draft) if draft else None,
            })

    def handle_shared_draft_update(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._writable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            payload = request.json()
            payload = payload if isinstance(payload, dict) else {}
            new_article, attributes = payload.get("new_article"), payload.get("ticket_attributes")
            user = self._user(request)
            assert user is not None  # _writable_ticket authenticated the request
            draft = self._save_draft(
                found, user.id, new_article if isinstance(new_article, dict) else {},
                attributes if isinstance(attributes, dict) else {},
            )
            return SimResponse(200, {
                "shared_draft_id": draft.id, "assets": self._draft_assets(found, draft),
            })

    def _save_draft(
        self, ticket: _Ticket, user_id: int, new_article: dict[str, Any],
        attributes: dict[str, Any],
    ) -> _Draft:
        """Create or overwrite the one shared draft; Zammad touches the ticket either way."""
        now = _iso(self._stamp())
        draft = ticket.draft
        if draft is None:
            draft = _Draft(next(self._ids), new_article, attributes, user_id, user_id, now, now)
            ticket.draft = draft
        else:
            draft.new_article, draft.ticket_attributes = new_article, attributes
            draft.updated_by_id, draft.updated_at = user_id, now
        self._touch(ticket, user_id)
        return draft

    def _draft_json(self, ticket: _Ticket, draft: _Draft) -> dict[str, Any]:
        return {
            "id": draft.id, "ticket_id": ticket.id, "new_article": dict(draft.new_article),
            "ticket_attributes": dict(draft.ticket_attributes),
            "created_by_id": draft.created_by_id, "updated_by_id": draft.updated_by_id,
            "created_at": draft.created_at, "updated_at": draft.updated_at,
        }

    def _draft_assets(self, ticket: _Ticket, draft: _Draft) -> dict[str, Any]:
        author = self.users[draft.created_by_id]
        return {
            "TicketSharedDraftZoom": {str(draft.id): self._draft_json(ticket, draft)},
            "User": {str(author.id): self._user_json(author, expand=False)},
        }
