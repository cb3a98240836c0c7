"""Freshdesk's rate limit, counted in credits: one a call, more for embedded resources."""

from __future__ import annotations

import math
import time

from adapters.freshdesk.simulator.records import NOMINAL_LIMIT, _includes
from adapters.simulation import SimRequest, SimResponse

INCLUDES = {  # embeddable resources, and the credits each one adds to the call
    "tickets_list": (frozenset({"description", "requester", "stats"}), 2),
    "ticket_view": (frozenset({"conversations", "requester", "company", "stats"}), 1),
}


def _credits(endpoint: str, request: SimRequest) -> int:
    """One credit per call plus what each embedded resource adds: two on the ticket list (as
    its reference says), one on the ticket view (not documented there: a guess)."""
    embeddable, each = INCLUDES.get(endpoint, (frozenset(), 0))
    return 1 + each * len(_includes(request) & embeddable)


class FreshdeskLimits:
    """Spends each call's credits from a one-minute window, refuses with 429 once it is empty
    and reports what is left in the headers."""

    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-RateLimit-Total": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - self._used())),
                "X-RateLimit-Used-CurrentRequest": str(_credits(endpoint, request))}

    def _used(self) -> int:
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= 60:
            self._window.popleft()
        return sum(credits for _, credits in self._window)

    def _admit(self, endpoint: str, request: SimRequest) -> SimResponse | None:
        """Count the request's credits against the per-minute windows; 429 once one is full."""
        now = time.monotonic()
        credits = _credits(endpoint, request)
        used = self._used()
        while self._list_window and now - self._list_window[0] >= 60:
            self._list_window.popleft()
        oldest: float | None = None
        if self.rate_limit is not None and used + credits > self.rate_limit and self._window:
            oldest = self._window[0][0]
        elif (endpoint == "tickets_list" and self.list_rate_limit is not None
              and len(self._list_window) >= self.list_rate_limit):
            oldest = self._list_window[0]
        if oldest is not None:
            response = SimResponse(429, {"message": "You have exceeded the limit of requests "
                                                    "per minute"})
            response.headers["Retry-After"] = str(max(1, math.ceil(oldest + 60 - now)))
            return response
        self._window.append((now, credits))
        if endpoint == "tickets_list":
            self._list_window.append(now)
        return None
