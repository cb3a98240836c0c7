"""Help Scout's rate limits: requests a minute, and an account-wide burst limit on writes."""

from __future__ import annotations

import time

from adapters.helpscout.simulator.records import NOMINAL_LIMIT, WRITE_METHODS, _too_many
from adapters.simulation import SimRequest, SimResponse


class HelpScoutLimits:
    """Counts requests and refuses with 429 once a limit is reached, reporting what is left in
    the headers."""

    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        if response.status == 429 and "Retry-After" in response.headers:
            # An injected 429 speaks Help Scout: its wait goes in the vendor's own header.
            response.headers["X-RateLimit-Retry-After"] = response.headers.pop("Retry-After")
        if endpoint == "oauth_token":
            return {}
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-RateLimit-Limit-Minute": str(limit),
                "X-RateLimit-Remaining-Minute": str(max(0, limit - self._used()))}

    def _used(self) -> int:
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= 60:
            self._window.popleft()
        return sum(weight for _, weight in self._window)

    def _admit(self, request: SimRequest) -> SimResponse | None:
        """Count the request (writes twice) against the minute, and a write against the burst
        window; 429 once either is full."""
        now = time.monotonic()
        write = request.method in WRITE_METHODS
        weight = 2 if write else 1
        used = self._used()
        if self.rate_limit is not None and used + weight > self.rate_limit:
            return _too_many(self._window[0][0] + 60 - now)
        if write and self.write_burst is not None:
            limit, seconds = self.write_burst
            while self._writes and now - self._writes[0] >= seconds:
                self._writes.popleft()
            if len(self._writes) >= limit:
                return _too_many(self._writes[0] + seconds - now)
            self._writes.append(now)
        self._window.append((now, weight))
        return None
