"""Ticket search as Zammad's Elasticsearch serves it: a subset of its query language, an index
that lags behind changes, and a result window.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from adapters.simulation import SimRequest, SimResponse
from adapters.zammad.simulator.records import (
    SEARCH_DEFAULT_PER_PAGE,
    SEARCH_MAX_PER_PAGE,
    SEARCH_WINDOW,
    _expand,
    _int_arg,
    _parse_time,
    _User,
)

_RANGE = re.compile(r"^([\[{])(\S+) TO (\S+)([\]}])$")
_UNESCAPED_COLON = re.compile(r"(?<!\\):")


class _QueryError(ValueError):
    """The search index refused the query; Zammad logs it and answers with no tickets."""


def _matcher(query: str) -> Any:
    """A predicate over indexed documents for the query_string subset the adapter needs.

    Clauses are joined by ``AND``; ``updated_at`` takes ``>=``, ``>``, ``<=``, ``<`` and
    ``[a TO b]`` ranges (colons in a time must be escaped outside brackets, as in Lucene);
    other ``field:value`` clauses match exactly; bare words match the title.
    """
    checks = [_clause(part) for part in re.split(r"\s+AND\s+", query.strip()) if part]
    if not checks:
        raise _QueryError("empty query")
    return lambda doc: all(check(doc) for check in checks)


def _clause(text: str) -> Any:
    field_name, sep, value = text.partition(":")
    if not sep:
        words = text.lower()
        return lambda doc: words in doc["title"].lower()
    if field_name == "updated_at":
        return _time_clause(value)
    if _UNESCAPED_COLON.search(value):
        raise _QueryError(f"cannot parse {text!r}")
    wanted = value.replace("\\:", ":").strip('"')
    return lambda doc: str(doc.get(field_name)) == wanted


def _time_clause(value: str) -> Any:
    ranged = _RANGE.match(value)
    if ranged:
        low, high = _parse_time(ranged.group(2)), _parse_time(ranged.group(3))
        if low is None or high is None:
            raise _QueryError(f"cannot parse range {value!r}")
        inclusive_low, inclusive_high = ranged.group(1) == "[", ranged.group(4) == "]"
        return lambda doc: (doc["updated"] >= low if inclusive_low else doc["updated"] > low) \
            and (doc["updated"] <= high if inclusive_high else doc["updated"] < high)
    operator = next((op for op in (">=", "<=", ">", "<") if value.startswith(op)), None)
    if operator is None or _UNESCAPED_COLON.search(value):
        raise _QueryError(f"cannot parse updated_at:{value}")
    bound = _parse_time(value[len(operator):].replace("\\:", ":"))
    if bound is None:
        raise _QueryError(f"cannot parse date {value!r}")
    compare = {
        ">=": lambda t: t >= bound, ">": lambda t: t > bound,
        "<=": lambda t: t <= bound, "<": lambda t: t < bound,
    }[operator]
    return lambda doc: compare(doc["updated"])


class ZammadSearch:
    """``GET /api/v1/tickets/search`` over an index updated ``index_lag`` seconds after each
    change."""

    def flush_index(self) -> None:
        """Index every pending change now, as if the lag had passed."""
        with self.lock:
            self._apply_index(math.inf)

    def handle_tickets_search(self, request: SimRequest) -> SimResponse:
        with self.lock:
            user = self._guard(request)
            if isinstance(user, SimResponse):
                return user
            per_page = _int_arg(request, ("per_page", "limit"), SEARCH_DEFAULT_PER_PAGE)
            per_page = min(max(per_page, 1), SEARCH_MAX_PER_PAGE)
            page = max(_int_arg(request, ("page",), 1), 1)
            hits = self._search(
                (request.arg("query") or "").replace("*", ""), user, page, per_page,
                request.arg("sort_by") or "updated_at", request.arg("order_by") or "desc",
            )
            tickets = [self.tickets[i] for i in hits if i in self.tickets]
            if _expand(request):
                return SimResponse(200, [self._ticket_json(t, expand=True) for t in tickets])
            return SimResponse(200, {
                "tickets": [t.id for t in tickets],
                "tickets_count": len(tickets),
                "assets": {"Ticket": {str(t.id): self._ticket_json(t) for t in tickets}},
            })

    def _queue_index(self, ticket_id: int, doc: dict[str, Any] | None) -> None:
        """Index the ticket's new state (None: remove it) once ``index_lag`` has passed."""
        due = time.monotonic() + self.index_lag
        self._index_queue.append((due, next(self._index_seq), ticket_id, doc))
        if self.index_lag <= 0:
            self._apply_index(time.monotonic())

    def _apply_index(self, now: float) -> None:
        due = sorted(entry for entry in self._index_queue if entry[0] <= now)
        self._index_queue = [entry for entry in self._index_queue if entry[0] > now]
        for _, _, ticket_id, doc in due:
            if doc is None:
                self._index.pop(ticket_id, None)
            else:
                self._index[ticket_id] = doc

    def _search(
        self, query: str, user: _User, page: int, per_page: int, sort_by: str, order_by: str
    ) -> list[int]:
        """Ticket ids of one page of hits, from the index as it is now."""
        self._apply_index(time.monotonic())
        if not query.strip():
            return []
        if not self.search_index or page * per_page > SEARCH_WINDOW:
            return []  # no Elasticsearch: SQL LIKE on title/body finds no field query
        try:
            matches = _matcher(query)
        except _QueryError:
            return []  # Zammad logs the Elasticsearch error and answers with no tickets
        docs = [
            doc for doc in self._index.values()
            if matches(doc) and doc["group_id"] not in user.denied_groups
            and (user.roles != ["Customer"] or doc["customer_id"] == user.id)
        ]
        key = "updated" if sort_by == "updated_at" else sort_by
        docs.sort(key=lambda d: (d.get(key) or 0, d["id"]), reverse=order_by == "desc")
        start = (page - 1) * per_page
        return [doc["id"] for doc in docs[start:start + per_page]]
