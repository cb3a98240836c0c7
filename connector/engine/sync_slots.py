"""How many sync chats may wait for their answer at once, when ``uppzy.sync_concurrency`` is
not set.

A sync chat holds a thread and a connection for the whole answer time, so the number that must
wait at once to keep up is Little's law: questions arriving per second times seconds per answer.
Fewer, and questions queue behind the slots (latency grows without bound while arrivals stay
above ``slots / answer time``); many more, and a burst lands on Uppzy all at once, whose
concurrency limits are not documented. So the limit follows the arrivals of the last
``WINDOW`` seconds and the answer time, with room for bursts (``HEADROOM``), between ``FLOOR``
and ``CAP``. The answer time is the 90th percentile of recent answers, or the wait of the
oldest chat still waiting if that is longer: answers that suddenly take a minute show there
long before any of them completes. ``FLOOR`` is generous (16 chats of 30 s are ~1,900
questions an hour), so ordinary traffic and its bursts never wait for the estimate to catch
up. A configured ``sync_concurrency`` is used as is.

Arrivals are counted where questions are created (the reads of this instance), not where they
are claimed: counted at the claim, a limit that is too low would only ever see as many arrivals
as it lets through and never grow. With several instances each counts the questions it read,
so their limits add up to the need (any instance may ask any question, so this is a sizing, not
a partition).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FLOOR = 16
CAP = 64
HEADROOM = 1.5
WINDOW = 300.0  # seconds of arrivals the rate is taken over
MIN_SPAN = 60.0  # a rate is never taken over less: a start's first minute is not a trend
DEFAULT_ANSWER = 30.0  # seconds, until an answer was seen
ANSWERS_KEPT = 200


class SyncSlots:
    def __init__(self, configured: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.configured = configured
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._arrivals: deque[tuple[float, int]] = deque()  # (when counted, how many)
        self._answers: deque[float] = deque(maxlen=ANSWERS_KEPT)
        self._asked: dict[int, float] = {}  # chats waiting now: when each was asked
        self._ids = itertools.count()

    @property
    def most(self) -> int:
        """The largest limit there can be: what connection pools are sized for."""
        return self.configured if self.configured is not None else CAP

    def arrived(self, count: int) -> None:
        """``count`` new questions were queued since the last call."""
        if count <= 0:
            return
        now = self._clock()
        with self._lock:
            self._arrivals.append((now, count))
            while self._arrivals and self._arrivals[0][0] < now - WINDOW:
                self._arrivals.popleft()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A sync chat waiting for its answer: timed when it ends, and meanwhile the age of
        the oldest one counts as an answer time."""
        key, started = next(self._ids), self._clock()
        with self._lock:
            self._asked[key] = started
        try:
            yield
        finally:
            with self._lock:
                del self._asked[key]
        self.answered(self._clock() - started)

    def answered(self, seconds: float) -> None:
        """A sync chat took ``seconds`` to answer."""
        with self._lock:
            self._answers.append(max(0.0, seconds))

    def limit(self) -> int:
        if self.configured is not None:
            return self.configured
        now = self._clock()
        with self._lock:
            arrivals = sum(n for at, n in self._arrivals if at >= now - WINDOW)
            answers = sorted(self._answers)
            oldest = now - min(self._asked.values(), default=now)
        span = max(MIN_SPAN, min(WINDOW, now - self._started))
        answer = answers[int(0.9 * (len(answers) - 1))] if answers else DEFAULT_ANSWER
        answer = max(answer, oldest)
        need = math.ceil(HEADROOM * arrivals / span * answer)
        return max(FLOOR, min(CAP, need))
