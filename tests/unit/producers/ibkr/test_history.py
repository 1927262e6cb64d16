from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from producers.ibkr.history import PAGE_S, duration, windows
from producers.ibkr.normalise import BAR_SIZES

START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1800, "1800 S"), (86_400, "86400 S"), (172_800, "2 D"), (365 * 86_400, "365 D"),
     (5 * 365 * 86_400, "5 Y")],
)  # fmt: skip
def test_durations_use_ibs_units(seconds: int, text: str) -> None:
    assert duration(seconds) == text


def test_windows_cover_the_range_from_the_newest_back_without_gaps() -> None:
    got = windows(START, START + timedelta(hours=50), "1m")
    assert got[0] == (START + timedelta(hours=26), START + timedelta(hours=50))
    assert [upper for _, upper in got[1:]] == [lower for lower, _ in got[:-1]]
    assert got[-1][0] <= START < got[-1][1]
    assert len(got) == 3
    assert windows(START, START, "1m") == []


def test_every_bar_size_has_a_page() -> None:
    assert set(PAGE_S) == set(BAR_SIZES)
