"""The rollups on TimescaleDB: continuous aggregates refreshed by their policies (run by hand:
PGlite has no background workers) equal the plain-PostgreSQL rollups of `mdp rollup` and the
rollups computed independently, on the same bars; a revision and a late bar reach them at the
next refresh and not before."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from marketdata import migrate
from marketdata.records import Bar
from marketdata.rollups import refresh, rollups
from marketdata.settings import Settings
from tests.rollups import Row, expected, plain_database, sample_bars, stored, write
from tests.services import Found
from tests.timescale.support import job_ids, run_job

pytestmark = pytest.mark.timescale
SPEC = "5m,15m,1h,1d"


@pytest.fixture
def plain(services: Found, unique: str) -> Iterator[Settings]:
    with plain_database(services.database_url, unique, SPEC) as settings:
        yield settings


def _refresh_all(url: str) -> None:
    for rollup in rollups(SPEC):
        (job,) = job_ids(url, "policy_refresh_continuous_aggregate", rollup.table)
        run_job(url, job)


def _materialized(url: str, view: str) -> list[Row]:
    """What the refresh stored, without the real-time part computed at query time."""
    with psycopg.connect(url) as conn:
        schema, table = conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
            (view,),
        ).fetchone() or ("", "")
        return conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))
        ).fetchall()


def _revise(bar: Bar, **changes: object) -> Bar:
    return Bar(**{**{f: getattr(bar, f) for f in bar.__struct_fields__}, **changes})


def test_continuous_aggregates_equal_the_plain_rollups_and_take_revisions_when_refreshed(
    empty: Settings, plain: Settings
) -> None:
    # Two days back, within every policy's window (3 days back to one bucket, a day at most).
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=2) + timedelta(hours=10, minutes=31)
    bars = sample_bars(start, 200)
    for url in (empty.database, plain.database):
        write(url, bars)
    _refresh_all(empty.database)
    with psycopg.connect(plain.database) as conn:
        refresh(conn, SPEC)
    for rollup in rollups(SPEC):
        rows = expected(bars, rollup.width)
        assert stored(plain.database, rollup.table) == rows
        assert stored(empty.database, rollup.table) == rows
        assert len(_materialized(empty.database, rollup.table)) == len(rows)

    old = next(b for b in bars if b.symbol == "BTCUSDT" and b.interval == "1m")
    revised = _revise(old, close=old.close + 1, high=old.high + 5)
    stamps = {b.timestamp for b in bars if b.symbol == "BTCUSDT"}
    gap = next(start + timedelta(minutes=m) for m in range(200)
               if start + timedelta(minutes=m) not in stamps)  # fmt: skip
    late = _revise(old, timestamp=gap, volume=Decimal("3.25"))
    for url in (empty.database, plain.database):
        write(url, [revised, late])
    everything = [*bars, revised, late]
    five = rollups("5m")[0]
    # Materialized buckets keep the old values until the policy runs again.
    assert stored(empty.database, five.table) == expected(bars, five.width)
    _refresh_all(empty.database)
    with psycopg.connect(plain.database) as conn:
        refresh(conn, SPEC)
    for rollup in rollups(SPEC):
        rows = expected(everything, rollup.width)
        assert rows != expected(bars, rollup.width)
        assert stored(plain.database, rollup.table) == rows
        assert stored(empty.database, rollup.table) == rows


def test_mdp_rollup_leaves_timescaledb_to_its_policies(migrated: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mdp", "rollup"], capture_output=True, text=True, timeout=120,
        check=False, env={**migrated.to_env(), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "TimescaleDB: the rollups are continuous aggregates, kept by policy"
    )


def _policy_jobs(url: str, view: str) -> int:
    return len(job_ids(url, "policy_refresh_continuous_aggregate", view))


def test_mdp_migrate_reconciles_the_continuous_aggregates_with_the_list(empty: Settings) -> None:
    """MDP_ROLLUP_INTERVALS changed: `mdp migrate` makes the aggregate now listed, with its
    policy, materialized from the stored bars at once; one no longer listed keeps its data but
    loses its policy and its real-time part (frozen, as a plain table left alone); listed again,
    it is refreshed over its whole range and has its policy back."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=2) + timedelta(hours=3)
    bars = sample_bars(start, 240)
    write(empty.database, bars)
    _refresh_all(empty.database)
    changed = empty.model_copy(update={"rollup_intervals": "5m,1h,4h,1d"})
    four, quarter = "market_data_ohlcv_4h", "market_data_ohlcv_15m"
    try:
        migrate.upgrade(changed)
        assert stored(empty.database, four) == expected(bars, timedelta(hours=4))
        assert len(_materialized(empty.database, four)) == len(expected(bars, timedelta(hours=4)))
        assert (_policy_jobs(empty.database, four), _policy_jobs(empty.database, quarter)) == (1, 0)

        more = sample_bars(start + timedelta(minutes=240), 120, seed=8)
        write(empty.database, more)
        everything = [*bars, *more]
        (job,) = job_ids(empty.database, "policy_refresh_continuous_aggregate", four)
        run_job(empty.database, job)
        assert stored(empty.database, four) == expected(everything, timedelta(hours=4))
        assert stored(empty.database, quarter) == expected(bars, timedelta(minutes=15))

        migrate.upgrade(empty)  # the suite's list again: 15m back, 4h left out
        assert stored(empty.database, quarter) == expected(everything, timedelta(minutes=15))
        materialized = _materialized(empty.database, quarter)
        assert len(materialized) == len(expected(everything, timedelta(minutes=15)))
        assert (_policy_jobs(empty.database, four), _policy_jobs(empty.database, quarter)) == (0, 1)
    finally:
        with psycopg.connect(empty.database, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(sql.Identifier(four))
            )
        migrate.upgrade(empty)
