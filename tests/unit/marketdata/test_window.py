from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.records import Tick
from marketdata.window import SeenWindow, fingerprint
from tests.clock import Clock
from tests.strategies import sample_tick


def test_each_key_is_admitted_once() -> None:
    window = SeenWindow(max_keys=100, max_age_s=60, clock=Clock())
    a, b = sample_tick(trade_id="1"), sample_tick(trade_id="2")
    assert window.admit([a, b, a]) == [a, b]
    assert window.admit([b, sample_tick(trade_id="1")]) == []
    assert len(window) == 2


def test_the_window_forgets_the_oldest_beyond_its_size() -> None:
    window = SeenWindow(max_keys=3, max_age_s=60, clock=Clock())
    ticks = [sample_tick(trade_id=str(n)) for n in range(5)]
    window.admit(ticks)
    assert len(window) == 3
    assert fingerprint(ticks[0]) not in window
    assert fingerprint(ticks[4]) in window
    assert window.admit([ticks[0]]) == [ticks[0]]  # forgotten, so admitted again


def test_the_window_forgets_keys_older_than_its_span() -> None:
    clock = Clock()
    window = SeenWindow(max_keys=100, max_age_s=10, clock=clock)
    old = sample_tick(trade_id="old")
    window.admit([old])
    clock.now = 5
    window.admit([sample_tick(trade_id="mid")])
    clock.now = 12
    window.admit([sample_tick(trade_id="new")])
    assert fingerprint(old) not in window
    assert len(window) == 2


def test_fingerprint_follows_the_key_only() -> None:
    a = sample_tick(extras={"x": 1}, received_at=sample_tick().received_at.replace(second=9))
    assert fingerprint(a) == fingerprint(sample_tick())
    assert fingerprint(sample_tick(source="other")) != fingerprint(sample_tick())


def test_a_key_forgotten_then_taken_again_stays_until_its_own_expiry() -> None:
    """The webhook forgets a body it could not store and takes it again on the next delivery:
    the first entry's expiry must not remove the second."""
    clock = Clock()
    window = SeenWindow(max_keys=100, max_age_s=10, clock=clock)
    assert window.seen_before(1) is False
    window.forget(1)
    clock.now = 6
    assert window.seen_before(1) is False  # taken again
    clock.now = 12  # the first entry expires, the second (at 6) does not
    assert window.seen_before(2) is False
    assert 1 in window
    assert window.seen_before(1) is True
    clock.now = 17
    window.seen_before(3)
    assert 1 not in window
    assert len(window) == 2


class _Model:
    """The window's rules, stated plainly: every key with its time, oldest first."""

    def __init__(self, max_keys: int, max_age_s: float) -> None:
        self.max_keys, self.max_age_s = max_keys, max_age_s
        self.keys: dict[int, float] = {}

    def admit(self, ticks: list[Tick], now: float) -> list[Tick]:
        fresh = []
        for tick in ticks:
            key = fingerprint(tick)
            if key not in self.keys:
                self.keys[key] = now
                fresh.append(tick)
        while len(self.keys) > self.max_keys:
            del self.keys[next(iter(self.keys))]
        for key, at in list(self.keys.items()):
            if at < now - self.max_age_s:
                del self.keys[key]
        return fresh


@settings(max_examples=300, deadline=None)
@given(
    max_keys=st.integers(1, 12),
    steps=st.lists(
        st.tuples(st.lists(st.integers(0, 20), max_size=8), st.integers(0, 4)), max_size=30
    ),
)
def test_the_window_admits_what_a_plain_model_of_its_rules_admits(
    max_keys: int, steps: list[tuple[list[int], int]]
) -> None:
    clock = Clock()
    window = SeenWindow(max_keys=max_keys, max_age_s=5, clock=clock)
    model = _Model(max_keys, 5)
    ticks = [sample_tick(trade_id=str(n)) for n in range(21)]
    for ids, advance in steps:
        clock.now += advance
        batch = [ticks[n] for n in ids]
        assert window.admit(batch) == model.admit(batch, clock.now)
        assert len(window) == len(model.keys)
        assert all(key in window for key in model.keys)


def test_times_a_microsecond_apart_have_different_fingerprints_across_the_years() -> None:
    """The time is hashed as POSIX seconds: a float must still tell microseconds apart."""
    for year in (1970, 2000, 2024, 2099):
        at = datetime(year, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
        ticks = [sample_tick(timestamp=at + timedelta(microseconds=n)) for n in range(2)]
        assert ticks[0].timestamp.timestamp() != ticks[1].timestamp.timestamp()
        assert fingerprint(ticks[0]) != fingerprint(ticks[1])
    same = datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert fingerprint(sample_tick(timestamp=same)) == fingerprint(
        sample_tick(timestamp=same.astimezone(UTC))
    )
