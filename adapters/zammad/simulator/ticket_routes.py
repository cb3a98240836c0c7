"""The endpoints for one ticket, its articles and tags, and the states and groups they refer to."""

from __future__ import annotations

from adapters.simulation import SimRequest, SimResponse
from adapters.zammad.simulator.records import ARTICLE_TYPES, _error, _expand


class ZammadTicketRoutes:
    """Reading tickets and what they refer to over HTTP, and posting articles to them."""

    def handle_ticket_show(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._readable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            return SimResponse(200, self._ticket_json(found, expand=_expand(request)))

    def handle_articles_by_ticket(self, request: SimRequest, ticket_id: int) -> SimResponse:
        with self.lock:
            found = self._readable_ticket(request, ticket_id)
            if isinstance(found, SimResponse):
                return found
            user = self._user(request)
            agent = user is not None and user.roles != ["Customer"]
            return SimResponse(200, [
                self._article_json(a) for a in found.articles if agent or not a.internal
            ])

    def handle_article_create(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            payload = request.json()
            if not isinstance(payload, dict):
                return _error(422, "Need ticket_id!")
            raw_id = str(payload.get("ticket_id", ""))
            ticket = self.tickets.get(int(raw_id)) if raw_id.isdigit() else None
            if ticket is None:
                return _error(404, f"Couldn't find Ticket with 'id'={payload.get('ticket_id')}")
            body = payload.get("body")
            if not isinstance(body, str) or not body.strip():
                return _error(422, "Need at least article: body!")
            customer = user.roles == ["Customer"]
            if not self._may_access(user, ticket):
                return _error(403, "Not authorized")
            article_type = payload.get("type") or "note"
            if article_type not in ARTICLE_TYPES:
                return _error(422, f"Unknown article type {article_type!r}")
            content_type = payload.get("content_type") or "text/plain"
            article = self._new_article(
                ticket, user.id, body, sender="Customer" if customer else "Agent",
                type_=article_type,
                # Zammad's default is a public article; a customer cannot write internal ones.
                internal=payload.get("internal") is True and not customer,
                html=content_type == "text/html",
            )
            self._touch(ticket, user.id)
            return SimResponse(201, self._article_json(article))

    def handle_ticket_states(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            return SimResponse(200, [
                self._state_json(s, expand=_expand(request)) for s in self.states.values()
            ])

    def handle_group_show(self, request: SimRequest, group_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            if self.groups_need_admin and "Admin" not in user.roles:
                return _error(403, "Not authorized")
            group = self.groups.get(group_id)
            if group is None:
                return _error(404, f"Couldn't find Group with 'id'={group_id}")
            return SimResponse(200, {
                "id": group.id, "name": group.name, "shared_drafts": group.shared_drafts,
                "active": True, "follow_up_possible": "yes", "follow_up_assignment": True,
                "assignment_timeout": None, "email_address_id": 1, "signature_id": None,
                "note": "", "created_at": group.created_at, "updated_at": group.created_at,
            })

    def handle_ticket_tags(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request, agent=True)
            if isinstance(user, SimResponse):
                return user
            if request.arg("object") != "Ticket":
                return _error(422, "Need object and o_id!")
            ticket_id = request.arg("o_id") or ""
            ticket = self.tickets.get(int(ticket_id)) if ticket_id.isdigit() else None
            if ticket is None:
                return _error(404, f"Couldn't find Ticket with 'id'={ticket_id}")
            if not self._may_access(user, ticket):
                return _error(403, "Not authorized")
            return SimResponse(200, {"tags": list(ticket.tags)})
