"""When to look for an async answer: near the time recent answers took, then backing off.

Polling too early wastes calls; polling too late delays the draft. Recent completion times per
site are the best predictor the API gives us (it documents no callbacks and no ETA).
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

WINDOW = 50
MIN_DELAY = 0.2


class AnswerTimeEstimator:
    def __init__(self, default_first_poll: float) -> None:
        self._default = default_first_poll
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))

    def observe(self, site_id: str, seconds: float) -> None:
        with self._lock:
            self._recent[site_id].append(max(0.0, seconds))

    def expected(self, site_id: str, quantile: float = 0.5) -> float | None:
        with self._lock:
            samples = sorted(self._recent.get(site_id, ()))
        if not samples:
            return None
        index = min(len(samples) - 1, int(quantile * len(samples)))
        return samples[index]

    def first_poll_delay(self, site_id: str) -> float:
        """A little before most recent answers were ready; the default before any history."""
        early = self.expected(site_id, 0.2)
        if early is None:
            return self._default
        return max(MIN_DELAY, early * 0.9)

    def next_poll_delay(self, polls_done: int, poll_interval: float) -> float:
        """Short steps right after the first miss, growing to ``poll_interval``."""
        return max(MIN_DELAY, min(poll_interval, 0.5 * (2 ** max(0, polls_done - 1))))
