from __future__ import annotations

from decimal import Decimal

from marketdata.dedupe import latest_bars, unique_ticks
from tests.strategies import sample_bar, sample_tick


def test_unique_ticks_keeps_the_first_copy_of_each_key() -> None:
    first = sample_tick(trade_id="1", extras={"copy": 1})
    again = sample_tick(trade_id="1", extras={"copy": 2})
    other = sample_tick(trade_id="2")
    assert unique_ticks([first, other, again]) == [first, other]


def test_latest_bar_version_wins_but_never_a_live_one_over_a_closed_one() -> None:
    live = sample_bar(closed=False, close=Decimal("61200.00"))
    closed = sample_bar(closed=True)
    replayed_live = sample_bar(closed=False, close=Decimal("61210.00"))
    corrected = sample_bar(closed=True, volume=Decimal("13"))
    other_minute = sample_bar(timestamp=sample_bar().timestamp.replace(minute=1))
    assert latest_bars([live, closed, replayed_live]) == [closed]
    assert latest_bars([live, replayed_live]) == [replayed_live]
    assert latest_bars([closed, corrected, other_minute]) == [corrected, other_minute]


def test_latest_bars_keeps_each_source_of_one_minute_with_its_own_versions() -> None:
    venue_closed = sample_bar(closed=True)
    derived_live = sample_bar(closed=False, source="derived.trades", vwap=Decimal("61220"))
    derived_closed = sample_bar(closed=True, source="derived.trades", vwap=Decimal("61221"))
    venue_replayed_live = sample_bar(closed=False, close=Decimal("61210.00"))
    kept = latest_bars([venue_closed, derived_live, venue_replayed_live, derived_closed])
    assert kept == [venue_closed, derived_closed]
