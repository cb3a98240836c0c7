"""The incremental ticket export: its cursor, its exclusion of the newest changes and its scope."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from adapters.simulation import SimRequest, SimResponse
from adapters.zendesk.simulator.records import NS, SUPPORT_TYPES, _decode, _encode, _error, _Ticket


class ZendeskExport:
    """``GET /api/v2/incremental/tickets/cursor``, which lists tickets in the order they changed."""

    def handle_incremental_tickets(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            if user.role != "admin":
                return _error(403, "Forbidden", "You do not have access to this page.")
            limited = self._admit_export()
            if limited is not None:
                return limited
            scope = request.arg("support_type_scope", "agent")
            if scope not in ("all", *SUPPORT_TYPES):
                return _error(400, "InvalidValue", "support_type_scope is not valid")
            per_page = request.arg("per_page", "1000") or ""
            if not per_page.isdigit() or not 1 <= int(per_page) <= 1000:
                return _error(400, "InvalidValue", "per_page must be between 1 and 1000")
            now = time.time_ns()
            cutoff = now - int(self.exclude_newest * NS)
            position = self._export_position(request, cutoff)
            if isinstance(position, SimResponse):
                return position
            include_deleted = request.arg("exclude_deleted") != "true"
            rows = sorted(
                (t for t in self.tickets.values()
                 if (t.stamp, t.id) > position and t.stamp <= cutoff
                 and (include_deleted or t.status != "deleted")
                 and scope in ("all", t.support_type)),
                key=lambda t: (t.stamp, t.id),
            )
            page = rows[: int(per_page)]
            after = _encode(page[-1].stamp, page[-1].id) if page else _encode(*position)
            body: dict[str, Any] = {
                "tickets": [self._ticket_json(t) for t in page],
                "after_url": f"{self.url}/api/v2/incremental/tickets/cursor.json?"
                             + urlencode({"cursor": after, "per_page": per_page}),
                "after_cursor": after,
                "before_url": None,
                "before_cursor": None,
                "end_of_stream": len(rows) <= len(page),
            }
            if "comment_count" in (request.arg("include") or "").split(","):
                for item, ticket in zip(body["tickets"], page, strict=True):
                    item["comment_count"] = self._comment_count(ticket)
            self._side_load(request, body, [t.requester_id for t in page])
            return SimResponse(200, body)

    def _comment_count(self, ticket: _Ticket) -> int:
        if self.comment_count_public_only:
            return sum(1 for c in ticket.comments if c.public)
        return len(ticket.comments)

    def _export_position(self, request: SimRequest, cutoff: int) -> tuple[int, int] | SimResponse:
        """Where the export resumes: after the cursor, or at ``start_time``."""
        cursor = request.arg("cursor")
        if cursor:
            decoded = _decode(cursor, 2)
            if decoded is None:
                return _error(400, "InvalidPaginationParameter", "Invalid cursor")
            return decoded[0], decoded[1]
        start = request.arg("start_time")
        if start is None:
            return _error(400, "InvalidValue", "start_time or cursor is required")
        if not start.isdigit():
            return _error(400, "InvalidValue", "start_time must be an integer")
        if int(start) * NS > cutoff:
            return _error(
                400, "InvalidValue",
                f"Too recent start_time. Use a start_time older than {self.exclude_newest:g}s",
            )
        return int(start) * NS, -1
