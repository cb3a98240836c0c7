"""The ticket endpoints: the list with its filters and pages, one ticket, its conversations and
notes, and the ticket fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from adapters.freshdesk.simulator.records import (
    _TIME_FORMAT,
    ACCESS_DENIED,
    CUSTOMER_LABELS,
    DEFAULT_WINDOW,
    NOTE,
    STATUSES,
    _includes,
    _parse_since,
    _Ticket,
    _validation,
)
from adapters.simulation import SimRequest, SimResponse


def _invalid_note(payload: dict[str, Any]) -> SimResponse | None:
    """Freshdesk's 400 for a note it refuses, or None."""
    body = payload.get("body")
    if not isinstance(body, str) or not body.strip():
        return _validation("body", "It should be a/an String and can't be blank")
    for flag in ("private", "incoming"):
        if flag in payload and not isinstance(payload[flag], bool):
            return _validation(flag, "It should be a/an Boolean")
    emails = payload.get("notify_emails", [])
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        return _validation("notify_emails", "It should be a/an Array of String")
    return None


class FreshdeskTicketRoutes:
    """Reading tickets and their conversations over HTTP, and adding notes, with Freshdesk's
    validation."""

    def handle_tickets_list(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "tickets_list")
            if isinstance(user, SimResponse):
                return user
            paging = self._paging(request)
            if isinstance(paging, SimResponse):
                return paging
            rows = self._listed(request)
            if isinstance(rows, SimResponse):
                return rows
            page, per_page = paging
            chosen = rows[(page - 1) * per_page: page * per_page]
            description = "description" in _includes(request)
            response = SimResponse(200, [self._ticket_json(t, description) for t in chosen])
            if len(rows) > page * per_page and page < self.max_page:
                query = {k: v[0] for k, v in request.query.items()}
                link = f"{self.url}/api/v2/tickets?{urlencode({**query, 'page': page + 1})}"
                response.headers["Link"] = f'<{link}>; rel="next"'
            return response

    def handle_ticket_view(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_view")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            body = self._ticket_json(ticket, description=True)
            if "conversations" in _includes(request):  # the first ten, as Freshdesk embeds
                body["conversations"] = [
                    self._conversation_json(ticket, c) for c in ticket.conversations[:10]
                ]
            return SimResponse(200, body)

    def handle_ticket_conversations(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_conversations")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            paging = self._paging(request)
            if isinstance(paging, SimResponse):
                return paging
            page, per_page = paging
            listing = [self._conversation_json(ticket, c) for c in ticket.conversations]
            if ticket.id in self.corrupted:
                listing.insert(0, {**(listing[0] if listing else {}), "id": None,
                                   "body": 42, "body_text": None, "created_at": None})
            response = SimResponse(200, listing[(page - 1) * per_page: page * per_page])
            if len(listing) > page * per_page:
                link = (f"{self.url}/api/v2/tickets/{ticket_id}/conversations?"
                        + urlencode({"per_page": per_page, "page": page + 1}))
                response.headers["Link"] = f'<{link}>; rel="next"'
            return response

    def handle_ticket_note(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_note")
            if isinstance(user, SimResponse):
                return user
            ticket = self._reachable(ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            payload = request.json()
            if not isinstance(payload, dict):
                return _validation("body", "It should be a JSON object")
            invalid = _invalid_note(payload)
            if invalid is not None:
                return invalid
            author = payload.get("user_id", user.id)
            if not isinstance(author, int) or author not in self.contacts:
                return _validation("user_id", "There is no contact matching the given user_id")
            entry = self._add(
                ticket, author, payload["body"], html=True,
                private=payload.get("private", True),  # Freshdesk's default: private
                incoming=payload.get("incoming", False), source=NOTE,
            )
            return SimResponse(201, {
                **self._conversation_json(ticket, entry),
                "notified_to": list(payload.get("notify_emails") or []),
            })

    def handle_ticket_fields(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, "ticket_fields")
            if isinstance(user, SimResponse):
                return user
            if not self.ticket_fields_enabled:
                return SimResponse(403, dict(ACCESS_DENIED))
            choices = {str(k): [v, CUSTOMER_LABELS[k]] for k, v in STATUSES.items()}
            choices.update({str(k): [v, v] for k, v in self.custom_statuses.items()})
            return SimResponse(200, [
                {"id": 1, "name": "requester", "label": "Search a requester",
                 "type": "default_requester", "default": True, "position": 1},
                {"id": 2, "name": "subject", "label": "Subject", "type": "default_subject",
                 "default": True, "position": 2},
                {"id": 3, "name": "status", "label": "Status", "description": "Ticket status",
                 "type": "default_status", "default": True, "position": 3,
                 "label_for_customers": "Status", "choices": choices},
            ])

    def _reachable(self, ticket_id: int) -> _Ticket | SimResponse:
        """The ticket, or Freshdesk's answer for one that is gone (404) or out of scope (403)."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return SimResponse(404)
        if ticket_id in self.restricted:
            return SimResponse(403, dict(ACCESS_DENIED))
        return ticket

    def _paging(self, request: SimRequest) -> tuple[int, int] | SimResponse:
        per_page, page = request.arg("per_page", "30") or "", request.arg("page", "1") or ""
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return _validation("per_page", "It should be a Positive Integer less than or equal "
                                           "to 100")
        if not page.isdigit() or int(page) < 1:
            return _validation("page", "It should be a Positive Integer")
        if int(page) > self.max_page:
            return _validation("page", f"It should be less than or equal to {self.max_page}")
        return int(page), int(per_page)

    def _listed(self, request: SimRequest) -> list[_Ticket] | SimResponse:
        """The tickets the list answers with, in the requested order."""
        view = request.arg("filter")
        if view not in (None, "spam", "deleted"):
            return _validation("filter", "It should be one of these values: 'spam,deleted'")
        rows = [t for t in self.tickets.values()
                if (view == "spam") == t.spam and (view == "deleted") == t.deleted
                and t.id not in self.restricted]
        if view is not None and self.removed_views != "honoured":
            extra = {"updated_since", "order_by", "order_type"} & set(request.query)
            if extra and self.removed_views == "refused":
                return _validation(sorted(extra)[0], "It is not allowed with filter")
            return sorted(rows, key=lambda t: (t.created_at, t.id), reverse=True)
        since = request.arg("updated_since")
        if since is None:
            cutoff = (datetime.strptime(self._now(), _TIME_FORMAT).replace(tzinfo=UTC)
                      - DEFAULT_WINDOW).strftime(_TIME_FORMAT)
            rows = [t for t in rows if t.created_at >= cutoff]
        else:
            parsed = _parse_since(since)
            if parsed is None:
                return _validation("updated_since", "It should be in the 'valid date' format")
            rows = [t for t in rows if t.updated_at >= parsed.strftime(_TIME_FORMAT)]
        order_by = request.arg("order_by", "created_at")
        if order_by not in ("created_at", "updated_at", "status"):
            return _validation("order_by", "It should be one of these values: "
                                           "'created_at,updated_at,status'")
        order_type = request.arg("order_type", "desc")
        if order_type not in ("asc", "desc"):
            return _validation("order_type", "It should be one of these values: 'asc,desc'")
        rows.sort(key=lambda t: (getattr(t, order_by), t.id), reverse=order_type == "desc")
        return rows
