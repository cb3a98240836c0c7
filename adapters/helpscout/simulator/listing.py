"""The endpoints that list: mailboxes and conversations, with Help Scout's filters, sorting and
pages."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from adapters.helpscout.simulator.records import NS, STATUSES, _Conversation, _Person, _vnd_error
from adapters.simulation import SimRequest, SimResponse

LIST_FILTERS: dict[str, frozenset[str]] = {
    "active": frozenset({"active"}), "pending": frozenset({"pending"}),
    "closed": frozenset({"closed"}), "spam": frozenset({"spam"}),
    "open": frozenset({"active", "pending"}), "all": frozenset(STATUSES),
}
_SINCE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class HelpScoutListing:
    """Mailboxes, the conversation list and one conversation, paged as Help Scout pages them."""

    def handle_mailboxes(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            rows = [{"id": k, "name": v, "slug": f"mb{k}", "email": f"mb{k}@example.com"}
                    for k, v in sorted(self.mailboxes.items())]
            return self._page(request, "/v2/mailboxes", "mailboxes", rows, 50)

    def handle_conversations_list(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            selection = self._list_selection(request)
            if isinstance(selection, SimResponse):
                return selection
            rows = [self._conversation_json(c) for c in selection]
            return self._page(request, "/v2/conversations", "conversations", rows,
                              self.page_size)

    def handle_conversation_show(self, request: SimRequest, conversation_id: int) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            conversation = self.conversations.get(conversation_id)
            if conversation is None or conversation.deleted:
                return _vnd_error(404, "Not Found")
            if conversation.merged_into is not None:
                location = f"{self.url}/v2/conversations/{conversation.merged_into}"
                return SimResponse(301, None, {"Location": location})
            if conversation.restricted:
                return _vnd_error(403, "Access denied")
            return SimResponse(200, self._conversation_json(conversation))

    def _list_selection(self, request: SimRequest) -> list[_Conversation] | SimResponse:
        """The conversations a list request matches, in its order (Help Scout's defaults:
        active only, newest first)."""
        status = request.arg("status", "active") or "active"
        if status not in LIST_FILTERS:
            return _vnd_error(400, "Validation error", ("status", f"Invalid value {status}"))
        since_arg = request.arg("modifiedSince")
        since = 0
        if since_arg:
            if not _SINCE.match(since_arg):
                return _vnd_error(400, "Validation error",
                                  ("modifiedSince", "Expected ISO 8601 UTC date"))
            since = int(datetime.fromisoformat(since_arg).timestamp() * NS)
        mailboxes: set[int] | None = None
        if request.arg("mailbox"):
            try:
                mailboxes = {int(m) for m in (request.arg("mailbox") or "").split(",")}
            except ValueError:
                return _vnd_error(400, "Validation error", ("mailbox", "Expected numbers"))
        tags = {t for t in (request.arg("tag") or "").split(",") if t}
        sort_field = request.arg("sortField", "createdAt") or "createdAt"
        sort_key = self._sort_keys().get(sort_field)
        if sort_key is None:
            return _vnd_error(400, "Validation error", ("sortField", f"Invalid {sort_field}"))
        order = request.arg("sortOrder", "desc")
        if order not in ("asc", "desc"):
            return _vnd_error(400, "Validation error", ("sortOrder", f"Invalid {order}"))
        visible = time.time_ns() - int(self.index_lag * NS)
        rows = []
        for conversation in self.conversations.values():
            modified = max((s for s in conversation.stamps if s <= visible), default=None)
            if modified is None or conversation.merged_into is not None or \
                    conversation.restricted:
                continue
            if conversation.status not in LIST_FILTERS[status] or modified < since:
                continue
            if mailboxes is not None and conversation.mailbox_id not in mailboxes:
                continue
            if tags and not tags & set(conversation.tags):
                continue
            rows.append((sort_key(conversation, modified), conversation.id, conversation))
        rows.sort(key=lambda row: (row[0], row[1]), reverse=order == "desc")
        return [row[2] for row in rows]

    def _sort_keys(self) -> dict[str, Any]:
        def customer(c: _Conversation) -> _Person:
            return self.people[c.customer_id]

        return {
            "createdAt": lambda c, m: c.created_at, "modifiedAt": lambda c, m: m,
            "number": lambda c, m: c.number, "status": lambda c, m: c.status,
            "subject": lambda c, m: c.subject, "mailboxid": lambda c, m: c.mailbox_id,
            "score": lambda c, m: c.created_at,
            "waitingSince": lambda c, m: c.waiting_since or "",
            "customerEmail": lambda c, m: customer(c).email or "",
            "customerName": lambda c, m: f"{customer(c).first} {customer(c).last}",
        }

    def _page(self, request: SimRequest, path: str, key: str, rows: list[dict[str, Any]],
              size: int, *, page_info: bool = True) -> SimResponse:
        """One numbered HAL page; the ``_embedded`` key is left out when the page is empty."""
        raw = request.arg("page", "1") or "1"
        if not raw.isdigit() or int(raw) < 1:
            return _vnd_error(400, "Validation error", ("page", "Must be a positive number"))
        number = int(raw)
        pages = math.ceil(len(rows) / size)
        chunk = rows[(number - 1) * size: number * size]
        query = {k: v[0] for k, v in request.query.items() if k != "page"}

        def link(page: int) -> dict[str, str]:
            return {"href": f"{base}{path}?{urlencode({**query, 'page': page})}"}

        base = self.link_base or self.url
        links: dict[str, Any] = {
            "self": link(number), "first": link(1), "last": link(max(pages, 1)),
            "page": {"href": f"{base}{path}{{?page}}", "templated": True},
        }
        if number < pages:
            links["next"] = link(number + 1)
        if number > 1:
            links["previous"] = link(number - 1)
        body: dict[str, Any] = {"_links": links}
        if page_info:
            body["page"] = {"size": size, "totalElements": len(rows), "totalPages": pages,
                            "number": number}
        if chunk:
            body["_embedded"] = {key: chunk}
        return SimResponse(200, body)
