"""How many sync chats wait at once when ``uppzy.sync_concurrency`` is not set: Little's law over
the arrivals and answer times seen, within a floor and a cap."""

from __future__ import annotations

from connector.engine.sync_slots import CAP, FLOOR, SyncSlots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_configured_concurrency_is_used_as_is() -> None:
    slots = SyncSlots(200, clock=Clock())
    slots.arrived(10_000)
    assert slots.limit() == 200 and slots.most == 200


def test_the_floor_before_anything_arrived() -> None:
    assert SyncSlots(None, clock=Clock()).limit() == FLOOR


def test_arrivals_times_answer_seconds_with_headroom() -> None:
    clock = Clock()
    slots = SyncSlots(None, clock=clock)
    clock.now += 300
    for _ in range(20):
        slots.answered(10.0)
    slots.arrived(600)  # two a second over the window, answers of 10 s: 20 waiting, x1.5
    assert slots.limit() == 30
    for _ in range(200):
        slots.answered(20.0)  # slower answers need more slots at the same arrival rate
    assert slots.limit() == 60


def test_a_chat_waiting_long_counts_before_it_is_answered() -> None:
    """Answers that suddenly take a minute show in the oldest chat still waiting, long before
    one of them completes and enters the percentile."""
    clock = Clock()
    slots = SyncSlots(None, clock=clock)
    clock.now += 300
    for _ in range(20):
        slots.answered(1.0)
    slots.arrived(300)  # one a second; answers of 1 s need the floor
    assert slots.limit() == FLOOR
    with slots.waiting():
        clock.now += 30
        assert slots.limit() == 45  # 1/s x 30 s x 1.5
    assert slots.limit() == FLOOR  # answered: one slow answer is not the 90th percentile


def test_a_burst_is_capped_and_forgotten_after_the_window() -> None:
    clock = Clock()
    slots = SyncSlots(None, clock=clock)
    slots.arrived(10_000)
    assert slots.limit() == CAP and slots.most == CAP
    clock.now += 301
    slots.arrived(1)
    assert slots.limit() == FLOOR  # the burst left the window; one arrival needs little


def test_the_first_minute_is_not_taken_as_a_rate() -> None:
    clock = Clock()
    slots = SyncSlots(None, clock=clock)
    clock.now += 1
    slots.answered(10.0)
    slots.arrived(60)  # sixty in the first second: averaged over a minute, not over one second
    assert slots.limit() == FLOOR  # 60/60 x 10 x 1.5 = 15 -> the floor, not 900
