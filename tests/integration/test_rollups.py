"""`mdp rollup` on plain PostgreSQL: the rollup tables equal rollups computed independently from
the 1m bars, and late bars and revisions of any age reach them at the next run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from marketdata import migrate
from marketdata.records import Bar
from marketdata.rollups import refresh, rollups
from marketdata.settings import Settings
from tests.rollups import expected, plain_database, sample_bars, stored, write
from tests.services import Found

SPEC = "5m,15m,1h,1d"


@pytest.fixture
def plain(services: Found, unique: str) -> Iterator[Settings]:
    """A migrated database of this test's own on the session's PostgreSQL, dropped afterwards."""
    with plain_database(services.database_url, unique, SPEC) as settings:
        yield settings


def run_rollup(settings: Settings) -> dict[str, int]:
    with psycopg.connect(settings.database) as conn:
        return refresh(conn, settings.rollup_intervals)


def test_rollups_equal_the_independent_ones_and_take_late_bars_and_revisions(
    plain: Settings,
) -> None:
    start = datetime(2026, 11, 30, 22, 31, tzinfo=UTC)  # spans a day's end
    bars = sample_bars(start, 200)
    write(plain.database, bars)
    first = run_rollup(plain)
    for rollup in rollups(SPEC):
        rows = expected(bars, rollup.width)
        assert stored(plain.database, rollup.table) == rows
        assert first[rollup.name] == len(rows)
    # Two days of two symbols, one of them in two sources (klines and derived bars).
    assert len(stored(plain.database, "market_data_ohlcv_1d")) == 6
    assert run_rollup(plain) == dict.fromkeys(("5m", "15m", "1h", "1d"), 0)

    # A revision of an old bar (a closed bar replaced, as the sink does) and a bar arriving late
    # in a gap, both in buckets the previous run wrote: recomputed at the next run.
    old = next(b for b in bars if b.symbol == "BTCUSDT" and b.interval == "1m")
    revised = Bar(**{**{f: getattr(old, f) for f in old.__struct_fields__},
                     "close": old.close + 1, "high": old.high + 5})  # fmt: skip
    stamps = {b.timestamp for b in bars if b.symbol == "BTCUSDT"}
    gap = next(start + timedelta(minutes=m) for m in range(200)
               if start + timedelta(minutes=m) not in stamps)  # fmt: skip
    late = Bar(**{**{f: getattr(old, f) for f in old.__struct_fields__},
                  "timestamp": gap, "volume": Decimal("3.25")})  # fmt: skip
    write(plain.database, [revised, late])
    second = run_rollup(plain)
    everything = [*bars, revised, late]
    for rollup in rollups(SPEC):
        assert stored(plain.database, rollup.table) == expected(everything, rollup.width)
        assert 1 <= second[rollup.name] <= 2  # only the buckets of the two bars


def test_mdp_rollup_runs_the_job_and_says_what_it_wrote(plain: Settings) -> None:
    write(plain.database, sample_bars(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 30))
    result = subprocess.run(
        [sys.executable, "-m", "mdp", "rollup"], capture_output=True, text=True, timeout=120,
        check=False, env={**plain.to_env(), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5m: 18 rows, 15m: 6 rows, 1h: 3 rows, 1d: 3 rows"
    assert len(stored(plain.database, "market_data_ohlcv_5m")) == 18


def test_mdp_migrate_makes_listed_rollups_filled_and_keeps_unlisted_ones_frozen(
    plain: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """MDP_ROLLUP_INTERVALS changed without the migrations down and up: `mdp migrate` makes the
    rollup now listed, filled at once from the stored bars; one no longer listed is kept as it
    was (not refreshed); listed again, the next run brings it up to date."""
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    bars = sample_bars(start, 300)
    write(plain.database, bars)
    run_rollup(plain)
    changed = plain.model_copy(update={"rollup_intervals": "5m,1h,4h,1d"})
    with caplog.at_level("INFO", logger="marketdata.rollups"):
        migrate.upgrade(changed)
    assert stored(plain.database, "market_data_ohlcv_4h") == expected(bars, timedelta(hours=4))
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("rollup 4h made") for m in said), said
    assert any(m.startswith("rollup 15m is not in MDP_ROLLUP_INTERVALS: kept") for m in said)

    more = sample_bars(start + timedelta(minutes=300), 60, seed=8)
    write(plain.database, more)
    assert run_rollup(changed).keys() == {"5m", "1h", "4h", "1d"}
    for name, width in (("5m", 5), ("1h", 60), ("4h", 240), ("1d", 1440)):
        rows = expected([*bars, *more], timedelta(minutes=width))
        assert stored(plain.database, f"market_data_ohlcv_{name}") == rows
    assert stored(plain.database, "market_data_ohlcv_15m") == expected(bars, timedelta(minutes=15))

    migrate.upgrade(plain)  # 15m listed again (4h now unlisted): nothing made
    assert run_rollup(plain)["15m"] > 0
    assert stored(plain.database, "market_data_ohlcv_15m") == expected(
        [*bars, *more], timedelta(minutes=15)
    )
    assert stored(plain.database, "market_data_ohlcv_4h") == expected(
        [*bars, *more], timedelta(hours=4)
    )
