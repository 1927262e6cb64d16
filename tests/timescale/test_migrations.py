"""The migrations on TimescaleDB: up, down and up again, with and without compression and
retention configured; the hypertables, compression settings, continuous aggregates (rollups) and
policy jobs each leaves."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest

from marketdata import migrate
from marketdata.database import connect
from marketdata.settings import Settings
from sinks.writer import BatchWriter
from tests.timescale.conftest import Server
from tests.timescale.support import bar, days_ago, job_ids, run_job, timescale_settings

pytestmark = pytest.mark.timescale


def _state(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        dimensions = conn.execute(
            "SELECT hypertable_name, column_name, time_interval"
            " FROM timescaledb_information.dimensions WHERE hypertable_schema = 'public'"
            " ORDER BY 1"
        ).fetchall()
        # TimescaleDB 2.23 lists every hypertable there, with NULLs until compression is set.
        compression = conn.execute(
            "SELECT h.hypertable_name, s.segmentby, s.orderby"
            " FROM timescaledb_information.hypertables h"
            " JOIN timescaledb_information.hypertable_compression_settings s"
            " ON s.hypertable = h.hypertable_name::regclass"
            " WHERE h.compression_enabled ORDER BY 1"
        ).fetchall()
        jobs = conn.execute(
            "SELECT hypertable_name, proc_name, config - 'hypertable_id' - 'mat_hypertable_id'"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2"
        ).fetchall()
        tables = conn.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename LIKE 'market_data_%' ORDER BY 1"
        ).fetchall()
        rollups = conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
            " ORDER BY 1"
        ).fetchall()
    return {
        "dimensions": dimensions, "compression": compression, "jobs": jobs, "tables": tables,
        "rollups": rollups,
    }  # fmt: skip


def _refresh(view: str, start: str, end: str) -> tuple[str, str, dict[str, str]]:
    return (
        f"market_data_ohlcv_{view}", "policy_refresh_continuous_aggregate",
        {"start_offset": start, "end_offset": end},
    )  # fmt: skip


EMPTY: dict[str, Any] = {
    "dimensions": [], "compression": [], "jobs": [], "tables": [], "rollups": [],
}  # fmt: skip
# Real-time continuous aggregates of 1m bars, refreshed from 3 days (or 3 buckets) back to one
# bucket back: the default MDP_ROLLUP_INTERVALS.
ROLLUP_JOBS = [
    _refresh("15m", "72:00:00", "00:15:00"),
    _refresh("1d", "72:00:00", "24:00:00"),
    _refresh("1h", "72:00:00", "01:00:00"),
    _refresh("5m", "72:00:00", "00:05:00"),
]
ROLLUPS = [(f"market_data_ohlcv_{name}", False) for name in ("15m", "1d", "1h", "5m")]
HYPERTABLES = [
    ("market_data_ohlcv", "timestamp", timedelta(days=7)),
    ("market_data_ticks", "timestamp", timedelta(days=1)),
]
TABLES = [("market_data_ohlcv",), ("market_data_ticks",)]


def test_up_down_up_without_policies_gives_hypertables_only(pglite: Server) -> None:
    plain = Settings.from_env({"MARKET_DATA_DATABASE_URL": pglite.url})
    hypertables_only = {
        "dimensions": HYPERTABLES, "compression": [], "jobs": ROLLUP_JOBS, "tables": TABLES,
        "rollups": ROLLUPS,
    }  # fmt: skip
    migrate.upgrade(plain)
    migrate.upgrade(plain)  # idempotent
    assert _state(pglite.url) == hypertables_only
    migrate.downgrade(plain, "base")
    assert migrate.current_revision(plain) is None
    assert _state(pglite.url) == EMPTY
    migrate.upgrade(plain)
    assert _state(pglite.url) == hypertables_only


def test_up_down_up_with_policies_configures_compression_and_retention(pglite: Server) -> None:
    settings = timescale_settings(
        pglite.url, MDP_TICKS_CHUNK_INTERVAL="2 days", MDP_ROLLUP_INTERVALS="4h,10m"
    )
    expected = {
        "dimensions": [
            ("market_data_ohlcv", "timestamp", timedelta(days=7)),
            ("market_data_ticks", "timestamp", timedelta(days=2)),
        ],
        "compression": [
            ("market_data_ohlcv", "exchange,symbol", '"timestamp" DESC,"interval",source'),
            ("market_data_ticks", "exchange,symbol", '"timestamp" DESC,source,trade_id'),
        ],
        "jobs": [
            ("market_data_ohlcv", "policy_compression", {"compress_after": "7 days"}),
            ("market_data_ohlcv", "policy_retention", {"drop_after": "400 days"}),
            _refresh("10m", "72:00:00", "00:10:00"),
            _refresh("4h", "72:00:00", "04:00:00"),
            ("market_data_ticks", "policy_compression", {"compress_after": "7 days"}),
            ("market_data_ticks", "policy_retention", {"drop_after": "30 days"}),
        ],
        "tables": TABLES,
        "rollups": [("market_data_ohlcv_10m", False), ("market_data_ohlcv_4h", False)],
    }
    for _ in range(2):
        migrate.downgrade(settings, "base")
        assert _state(pglite.url) == EMPTY
        migrate.upgrade(settings)
        assert migrate.current_revision(settings) is not None
        assert _state(pglite.url) == expected
    # Back to the suite's shared state (default chunking) for the tests that follow.
    migrate.downgrade(settings, "base")
    migrate.upgrade(timescale_settings(pglite.url))


_OLD_BAR = (
    "INSERT INTO market_data_ohlcv (exchange, symbol, interval, timestamp, open, high, low,"
    " close, volume, trade_count, closed, source) VALUES"
    " ('BINANCE', %s, '1m', %s, 1, 2, 1, 2, 5, 3, true, %s)"
)


def _sourced(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, source, close, vwap FROM market_data_ohlcv ORDER BY symbol, source"
        ).fetchall()


async def test_0003_on_a_compressed_hypertable_keys_bars_by_source_and_back(
    pglite: Server,
) -> None:
    """Bars stored under 0002 in a chunk the compression policy compressed: 0003 renames the
    merged sources and changes the key there, the writer then stores a derived bar of the same
    minute beside the venue's; the downgrade keeps the venue's bar, and up again."""
    settings = timescale_settings(pglite.url)
    migrate.downgrade(settings, "base")
    migrate.upgrade(settings, "0002")
    at = days_ago(20)
    with psycopg.connect(pglite.url) as conn:
        conn.execute(_OLD_BAR, ("BTCUSDT", at, "binance.rest.klines"))
        conn.execute(_OLD_BAR, ("ETHUSDT", at, "kline"))
    (job,) = job_ids(pglite.url, "policy_compression", "market_data_ohlcv")
    run_job(pglite.url, job)
    with psycopg.connect(pglite.url) as conn:
        chunks = conn.execute(
            "SELECT is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'market_data_ohlcv'"
        ).fetchall()
    assert chunks == [(True,)]

    migrate.upgrade(settings)
    assert _sourced(pglite.url) == [
        ("BTCUSDT", "binance.kline", Decimal(2), None),
        ("ETHUSDT", "kline", Decimal(2), None),
    ]
    sink = await connect(pglite.url)
    try:
        writer = BatchWriter()
        await writer.prepare(sink)
        derived = bar(at, close="101.5")
        derived = msgspec.structs.replace(derived, source="derived.trades", vwap=Decimal("100.25"))
        result = await writer.write(sink, [], [derived])
    finally:
        await sink.close()
    assert result.bars_written == 1
    assert _sourced(pglite.url) == [
        ("BTCUSDT", "binance.kline", Decimal(2), None),
        ("BTCUSDT", "derived.trades", Decimal("101.5"), Decimal("100.25")),
        ("ETHUSDT", "kline", Decimal(2), None),
    ]

    migrate.downgrade(settings, "0002")
    assert _sourced_0002(pglite.url) == [("BTCUSDT", "binance.kline"), ("ETHUSDT", "kline")]
    migrate.upgrade(settings)
    assert _state(pglite.url)["compression"][0] == (
        "market_data_ohlcv", "exchange,symbol", '"timestamp" DESC,"interval",source'
    )  # fmt: skip
    # Back to the suite's shared state for the tests that follow.
    migrate.downgrade(settings, "base")
    migrate.upgrade(settings)


def _sourced_0002(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, source FROM market_data_ohlcv ORDER BY symbol, source"
        ).fetchall()
