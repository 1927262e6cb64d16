from __future__ import annotations

import pytest

from producers.ibkr.pacing import MARGIN_S, HistoricalPacer, PacingRules


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pacer(clock: Clock, rules: PacingRules | None = None) -> HistoricalPacer:
    return HistoricalPacer(rules, clock=clock, sleep=clock.sleep)


async def test_an_identical_request_waits_fifteen_seconds(clock: Clock) -> None:
    paced = pacer(clock)
    assert await paced.acquire("same", "AAPL") == 0
    clock.now += 5
    assert await paced.acquire("same", "AAPL") == pytest.approx(10 + MARGIN_S)
    assert await paced.acquire("other", "MSFT") == 0


async def test_at_most_five_requests_for_one_key_in_two_seconds(clock: Clock) -> None:
    paced = pacer(clock)
    for n in range(5):
        assert await paced.acquire(n, "AAPL") == 0
        clock.now += 0.1
    assert await paced.acquire(5, "MSFT") == 0  # another contract is not held back
    waited = await paced.acquire(6, "AAPL")
    assert waited == pytest.approx(2 + MARGIN_S - 0.5)  # the first of the five left the window
    assert clock.now - 1000.0 == pytest.approx(2 + MARGIN_S)


async def test_at_most_sixty_requests_in_ten_minutes(clock: Clock) -> None:
    paced = pacer(clock, PacingRules(burst_limit=1000))
    for n in range(60):
        assert await paced.acquire(n, "AAPL") == 0
        clock.now += 1
    waited = await paced.acquire(60, "AAPL")
    assert waited == pytest.approx(600 + MARGIN_S - 60)
    assert paced.waited_s == waited


async def test_every_request_of_a_long_run_keeps_all_three_rules(clock: Clock) -> None:
    paced = pacer(clock)
    sent: list[float] = []
    for n in range(130):
        await paced.acquire(n % 3, "AAPL")  # the same three requests over and over
        sent.append(clock.now)
        clock.now += 0.01
    for index, at in enumerate(sent):
        assert sum(1 for t in sent if at - 2 < t <= at) <= 5
        assert sum(1 for t in sent if at - 600 < t <= at) <= 60
        same = [t for i, t in enumerate(sent[:index]) if i % 3 == index % 3]
        assert not same or at - same[-1] >= 15


async def test_at_most_fifty_requests_are_open_at_once() -> None:
    paced = HistoricalPacer()
    for _ in range(49):
        await paced.open.acquire()
    assert not paced.open.locked()
    await paced.open.acquire()
    assert paced.open.locked()
