"""Zendesk's per-minute rate limits: the account's, and the incremental export's own."""

from __future__ import annotations

import math
import time

from adapters.simulation import SimRequest, SimResponse
from adapters.zendesk.simulator.records import NOMINAL_LIMIT, _error


class ZendeskLimits:
    """Counts requests in sliding one-minute windows and refuses with 429 and ``Retry-After``."""

    def vendor_headers(
        self, endpoint: str, request: SimRequest, response: SimResponse
    ) -> dict[str, str]:
        limit = self.rate_limit or NOMINAL_LIMIT
        return {"X-Rate-Limit": str(limit),
                "X-Rate-Limit-Remaining": str(max(0, limit - len(self._window)))}

    def _admit(self) -> SimResponse | None:
        """Count the request against the per-minute window; 429 once it is full."""
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60:
            self._window.popleft()
        if self.rate_limit is not None and len(self._window) >= self.rate_limit:
            wait = max(1, math.ceil(self._window[0] + 60 - now))
            response = _error(
                429, "APIRateLimitExceeded", "Number of allowed API requests per minute exceeded"
            )
            response.headers["Retry-After"] = str(wait)
            return response
        self._window.append(now)
        return None

    def _admit_export(self) -> SimResponse | None:
        """The export's own per-minute window, counted after the account's."""
        now = time.monotonic()
        while self._export_window and now - self._export_window[0] >= 60:
            self._export_window.popleft()
        limit = self.export_rate_limit
        if limit is not None and len(self._export_window) >= limit:
            wait = max(1, math.ceil(self._export_window[0] + 60 - now))
            response = _error(429, "APIRateLimitExceeded",
                              "Number of allowed incremental export API requests per minute "
                              "exceeded")
            response.headers["Retry-After"] = str(wait)
            return response
        self._export_window.append(now)
        return None
