"""Client-side pacing for a vendor's short burst limits, shared by adapters that have one.

A 429 is handled by ``connector.core.http`` (it waits and retries), but a refused write still costs
a round trip and counts against the vendor's budget, and some vendors meter writes in windows of
a few seconds. Staying under such a window costs at most one window's wait, so it is cheaper to
wait before the write than to be refused. Only this process's writes are counted: another
instance or app on the same account can still draw a 429, which the HTTP client handles.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """At most ``limit`` events in any ``seconds``; ``acquire`` waits for a free slot.

    The wait happens under the lock, so writers go out in the order they asked, and it is
    bounded by ``seconds``: the oldest event leaves the window by then.
    """

    def __init__(
        self,
        limit: int,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("a window needs a positive limit and length")
        self.limit, self.seconds = limit, seconds
        self._clock, self._sleep = clock, sleep
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot, waiting for one if the window is full; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            waited = 0.0
            if len(self._events) >= self.limit:
                waited = max(0.0, self._events[0] + self.seconds - now)
                self._sleep(waited)
                now = self._clock()
                self._forget(now)
                while len(self._events) >= self.limit:  # a clock that moved too little
                    self._events.popleft()
            self._events.append(now)
            return waited

    def _forget(self, now: float) -> None:
        while self._events and now - self._events[0] >= self.seconds:
            self._events.popleft()
