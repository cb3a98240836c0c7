"""The per-ticket endpoints: show, update (comments, status, tags) and the comment listing."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from adapters.simulation import SimRequest, SimResponse
from adapters.zendesk.simulator.records import (
    PLACEHOLDER,
    STATUSES,
    _Comment,
    _decode,
    _encode,
    _error,
    _Ticket,
    _User,
    _via,
)


class ZendeskTicketRoutes:
    """Reading and updating one ticket over HTTP, with Zendesk's refusals for what it will not
    take."""

    def handle_ticket_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            ticket = self._readable_ticket(request, ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            body = {"ticket": self._ticket_json(ticket)}
            self._side_load(request, body, [ticket.requester_id])
            return SimResponse(200, body)

    def handle_ticket_update(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if user.role == "end-user":
                return _error(403, "Forbidden", "You do not have access to this page.")
            refused = self._refuse_ticket(ticket_id)
            if refused is not None:
                return refused
            ticket = self.tickets[ticket_id]
            payload = request.json()
            changes = payload.get("ticket") if isinstance(payload, dict) else None
            if not isinstance(changes, dict):
                return _error(400, "InvalidJSON", "The request body must hold a ticket object")
            if ticket.status == "closed":
                return _error(422, "RecordInvalid", "Status: closed prevents ticket update")
            invalid = self._invalid_update(changes)
            if invalid:
                return _error(422, "RecordInvalid", invalid)
            return SimResponse(200, self._apply_update(ticket, user, changes))

    def handle_ticket_comments(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            ticket = self._readable_ticket(request, ticket_id)
            if isinstance(ticket, SimResponse):
                return ticket
            comments = list(ticket.comments)
            if request.arg("sort_order") == "desc":
                comments.reverse()
            body = self._cursor_page(request, comments, ticket_id)
            if isinstance(body, SimResponse):
                return body
            if ticket_id in self.corrupted and not request.arg("page[after]"):
                body["comments"].insert(0, {
                    "id": None, "type": "Comment", "author_id": "someone", "body": 42,
                    "public": "yes", "created_at": "yesterday",
                })
            self._side_load(request, body, [c["author_id"] for c in body["comments"]])
            return SimResponse(200, body)

    def handle_custom_statuses(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if not self.custom_statuses_enabled:
                return _error(403, "Forbidden", "You do not have access to this page.")
            return SimResponse(200, {"custom_statuses": list(self.custom_statuses.values())})

    def _readable_ticket(self, request: SimRequest, ticket_id: int) -> _Ticket | SimResponse:
        """The ticket, or the 429/401/404/403 answer that ends a request to read it."""
        user = self._guard(request)
        if isinstance(user, SimResponse):
            return user
        refused = self._refuse_ticket(ticket_id)
        return refused if refused is not None else self.tickets[ticket_id]

    def _refuse_ticket(self, ticket_id: int) -> SimResponse | None:
        """The 404 or 403 that a missing, deleted or restricted ticket gets, else None."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None or ticket.status == "deleted":
            return _error(404, "RecordNotFound", "Not found")
        if ticket_id in self.restricted:
            return _error(403, "Forbidden", "You do not have access to this page.")
        return None

    def _invalid_update(self, changes: dict[str, Any]) -> str | None:
        """Zendesk's 422 reason for an update it refuses, or None.

        Types are checked before lookups: a JSON list or object is not hashable, and a simulator
        crash would answer 500 where Zendesk answers 422.
        """
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            return f"Status: {status} is not valid"
        custom = changes.get("custom_status_id")
        known = isinstance(custom, int) and custom in self.custom_statuses
        if custom is not None and not known:
            return "Custom status is invalid"
        tags = changes.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return "Tags: must be a list of strings"
        comment = changes.get("comment")
        if comment is None:
            return None
        if not isinstance(comment, dict):
            return "Comment: must be an object"
        texts = [comment.get(key) for key in ("body", "html_body") if key in comment]
        if not all(isinstance(t, str) for t in texts) or not any(t.strip() for t in texts):
            return "Comment: cannot be blank"
        if "public" in comment and not isinstance(comment["public"], bool):
            return "Comment: public must be true or false"
        return None

    def _apply_update(
        self, ticket: _Ticket, user: _User, changes: dict[str, Any]
    ) -> dict[str, Any]:
        audit_id = next(self._ids)
        events: list[dict[str, Any]] = []
        comment = changes.get("comment")
        if isinstance(comment, dict):
            author = comment.get("author_id")
            created = self._new_comment(
                ticket, author if isinstance(author, int) and author in self.users else user.id,
                self._render(ticket, comment.get("body")),
                self._render(ticket, comment.get("html_body")),
                public=comment.get("public", True),  # Zendesk's default: public
                via=_via("api"),
            )
            created.audit_id = audit_id
            events.append(self._comment_json(created))
        custom = changes.get("custom_status_id")
        if "status" in changes or custom is not None:
            previous = ticket.status
            category = self.custom_statuses[custom]["status_category"] if custom else None
            self._set_status(ticket, changes.get("status") or category or ticket.status, custom)
            events.append({"id": next(self._ids), "type": "Change", "field_name": "status",
                           "value": ticket.status, "previous_value": previous})
        if "tags" in changes:
            ticket.tags = list(dict.fromkeys(changes["tags"]))
        self._touch(ticket)
        return {
            "ticket": self._ticket_json(ticket),
            "audit": {
                "id": audit_id, "ticket_id": ticket.id, "created_at": ticket.updated_at,
                "author_id": user.id, "metadata": {"system": {}, "custom": {}},
                "via": _via("api"), "events": events,
            },
        }

    def _render(self, ticket: _Ticket, text: Any) -> str | None:
        """``text`` with placeholders expanded as Zendesk's Liquid would: known ones get their
        value, unknown ones nothing; an entity-escaped brace is not a placeholder."""
        if not isinstance(text, str) or not text:
            return None
        values = {"ticket.id": str(ticket.id), "ticket.status": ticket.status,
                  "ticket.title": ticket.subject}

        def value(match: re.Match[str]) -> str:
            self.placeholders_rendered += 1
            return values.get(match.group(1), "")

        return PLACEHOLDER.sub(value, text)

    def _cursor_page(
        self, request: SimRequest, comments: list[_Comment], ticket_id: int
    ) -> dict[str, Any] | SimResponse:
        """Cursor pagination only: offset pagination is legacy, so it is refused, not imitated."""
        size = request.arg("page[size]") or ""
        if not size.isdigit() or not 1 <= int(size) <= 100:
            return _error(400, "InvalidPaginationParameter", "page[size] must be 1 to 100")
        start = 0
        after = request.arg("page[after]")
        if after:
            decoded = _decode(after, 1)
            ids = [c.id for c in comments]
            if decoded is None or decoded[0] not in ids:
                return _error(400, "InvalidPaginationParameter", "Invalid page[after] cursor")
            start = ids.index(decoded[0]) + 1
        page = comments[start: start + int(size)]
        has_more = start + len(page) < len(comments)
        after_cursor = _encode(page[-1].id) if page else None
        before_cursor = _encode(page[0].id) if page else None
        base = f"{self.url}/api/v2/tickets/{ticket_id}/comments.json?"
        return {
            "comments": [self._comment_json(c) for c in page],
            "meta": {"has_more": has_more, "after_cursor": after_cursor,
                     "before_cursor": before_cursor},
            "links": {
                "next": base + urlencode({"page[size]": size, "page[after]": after_cursor})
                if has_more else None,
                "prev": base + urlencode({"page[size]": size, "page[before]": before_cursor})
                if start and page else None,
            },
        }

    def _side_load(self, request: SimRequest, body: dict[str, Any], user_ids: list[int]) -> None:
        if "users" in (request.arg("include") or "").split(","):
            body["users"] = [
                self._user_json(self.users[user_id])
                for user_id in dict.fromkeys(user_ids) if user_id in self.users
            ]
