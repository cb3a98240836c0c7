"""Zammad's rate limit, counted in a sliding one-minute window."""

from __future__ import annotations

import math
import time

from adapters.simulation import SimRequest, SimResponse
from adapters.zammad.simulator.records import _error


class ZammadLimits:
    """Refuses with 429 once the window is full, and reports the limit in each answer's headers."""

    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        if self.rate_limit is None:  # Zammad itself has no limiter; only a proxy adds these
            return {}
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - len(self._window)))}

    def _admit(self) -> SimResponse | None:
        """Count the request against the per-minute window; 429 once it is full."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            wait = max(1, math.ceil(self._window[0] + 60 - now))
            response = _error(429, "Too Many Requests")
            response.headers.update({
                "Retry-After": str(wait), "X-RateLimit-Reset": str(int(time.time()) + wait),
            })
            return response
        self._window.append(now)
        return None
