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
