from __future__ import annotations

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
