"""The rollup list of MDP_ROLLUP_INTERVALS and each rollup's refresh window."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketdata.errors import ConfigError
from marketdata.rollups import Rollup, rollups


def test_the_list_is_parsed_shortest_first_each_width_once() -> None:
    assert rollups(" 1d, 5m,15m ,1h,60m") == (
        Rollup("5m", timedelta(minutes=5)),
        Rollup("15m", timedelta(minutes=15)),
        Rollup("1h", timedelta(hours=1)),
        Rollup("1d", timedelta(days=1)),
    )
    assert rollups("5m")[0].table == "market_data_ohlcv_5m"


@pytest.mark.parametrize("spec", ["1m", "5s", "5", "m5", "5m,1w", "0h"])
def test_a_width_not_longer_than_the_bars_or_unknown_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="MDP_ROLLUP_INTERVALS"):
        rollups(spec)


def test_the_refresh_window_covers_three_days_and_at_least_three_buckets() -> None:
    five, day, week = rollups("5m,1d,7d")
    assert (five.lookback, five.schedule) == (timedelta(days=3), timedelta(minutes=5))
    assert (day.lookback, day.schedule) == (timedelta(days=3), timedelta(hours=1))
    assert week.lookback == timedelta(days=21)
