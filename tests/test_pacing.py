"""The sliding window that keeps adapters under a vendor's burst limit, on a fake clock."""

from __future__ import annotations

import pytest

from adapters.pacing import SlidingWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_window_waits_until_its_oldest_event_leaves() -> None:
    clock = FakeClock()
    window = SlidingWindow(3, 5.0, clock=clock, sleep=clock.sleep)
    for step in (0.0, 1.0, 1.0):
        clock.now += step
        assert window.acquire() == 0.0
    clock.now += 1.0  # 3 seconds after the first event
    assert window.acquire() == pytest.approx(2.0)
    assert clock.now == pytest.approx(105.0)
    clock.now += 10.0  # everything has left the window
    assert window.acquire() == 0.0
    assert clock.slept == [pytest.approx(2.0)]


def test_a_sleep_that_returns_early_never_lets_the_window_overflow() -> None:
    clock = FakeClock()
    window = SlidingWindow(2, 5.0, clock=clock, sleep=lambda seconds: None)
    for _ in range(5):
        window.acquire()
    assert len(window._events) == 2


def test_a_window_needs_a_positive_limit_and_length() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0, 5.0)
    with pytest.raises(ValueError):
        SlidingWindow(1, 0.0)
