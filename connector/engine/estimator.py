"""When to look for an async answer: just before the earliest recent answers, then evenly.

Every status poll is a call to Uppzy; every second between an answer being ready and our poll is
a second the agent waits. ``uppzy.poll_interval`` is the bound on that wait, so after the first
poll the right spacing is exactly ``poll_interval``: closer costs polls, wider breaks the bound.
The only free choice is the first poll. Before the earliest answers it is wasted; so it goes a
little before the low end of recent answer times per site (the API documents no callbacks and no
ETA, so recent completions are the best predictor there is).

The observed times are when *we* saw an answer, never earlier than the first poll. Aiming a bit
below their low quantile makes the estimate drift down until only a few answers are ever ready
before the first poll, so it cannot ratchet upwards on its own observations.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

WINDOW = 200
MIN_DELAY = 0.2
FIRST_POLL_QUANTILE = 0.05
FIRST_POLL_MARGIN = 0.9


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

    def first_poll_delay(self, site_id: str, ceiling: float) -> float:
        """A little before the earliest recent answers; the default before any history.

        Never past ``ceiling`` (half the answer timeout): whatever the history says, a request
        is looked at well before it would be given up.
        """
        early = self.expected(site_id, FIRST_POLL_QUANTILE)
        if early is None:
            return min(self._default, ceiling)
        return min(ceiling, max(MIN_DELAY, early * FIRST_POLL_MARGIN))

    def next_poll_delay(self, polls_done: int, poll_interval: float) -> float:
        """Evenly ``poll_interval`` apart: the longest wait the configuration allows.

        Short steps right after a miss would catch the few answers just past the first poll a
        little sooner, at two or three extra polls for every request that takes longer.
        """
        return max(MIN_DELAY, poll_interval)
