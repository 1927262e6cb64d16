"""The sink's BatchWriter on TimescaleDB hypertables: a batch stored, replayed (nothing twice, a
closed bar's revision applied), also into a chunk the compression policy has compressed; and the
retention policy dropping old chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from marketdata.database import connect
from marketdata.settings import Settings
from sinks.writer import AnyConnection, BatchWriter
from tests.timescale.support import bar, days_ago, job_ids, run_job, tick

pytestmark = pytest.mark.timescale


@pytest.fixture
async def writer(empty: Settings) -> AsyncIterator[tuple[BatchWriter, AnyConnection]]:
    # One client at a time on PGlite: the test closes this before checking through another.
    conn = await connect(empty.database)
    writer = BatchWriter()
    await writer.prepare(conn)
    try:
        yield writer, conn
    finally:
        await conn.close()


def _ticks(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, timestamp, trade_id, price, size, side, extras"
            " FROM market_data_ticks ORDER BY symbol, timestamp, trade_id"
        ).fetchall()


def _bars(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT symbol, timestamp, close, closed FROM market_data_ohlcv ORDER BY 1, 2"
        ).fetchall()


def _compressed_chunks(url: str, table: str) -> list[tuple[datetime, bool]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT range_start, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = %s ORDER BY range_start",
            (table,),
        ).fetchall()


async def test_a_batch_is_stored_once_and_a_replay_changes_nothing_but_revisions(
    empty: Settings, writer: tuple[BatchWriter, AnyConnection]
) -> None:
    batch_writer, conn = writer
    at = days_ago(1)
    ticks = [tick(at, n) for n in range(50)]
    bars = [bar(at + timedelta(minutes=m), closed=m < 2) for m in range(3)]
    first = await batch_writer.write(conn, ticks, bars)
    assert (first.ticks_inserted, first.bars_written) == (50, 3)
    replay = await batch_writer.write(conn, ticks, [*bars[:2], bar(bars[2].timestamp, close="99")])
    # Ticks: all known. Bars: two identical (nothing written), the live one closed at 99.
    assert (replay.ticks_staged, replay.ticks_inserted, replay.bars_written) == (50, 0, 1)
    await conn.close()
    stored = _ticks(empty.database)
    assert len(stored) == 50
    assert stored[7] == (
        "BTCUSDT", at + timedelta(milliseconds=7), "7", Decimal("107"), Decimal("0.5"), "buy",
        {"n": 7},
    )  # fmt: skip
    assert _bars(empty.database) == [
        ("BTCUSDT", at, Decimal("101"), True),
        ("BTCUSDT", at + timedelta(minutes=1), Decimal("101"), True),
        ("BTCUSDT", at + timedelta(minutes=2), Decimal("99"), True),
    ]


async def test_the_compression_policy_compresses_old_chunks_and_the_writer_still_upserts_there(
    empty: Settings, writer: tuple[BatchWriter, AnyConnection]
) -> None:
    batch_writer, conn = writer
    # Tick chunks are a day long, bar chunks a week: 10 and 20 days back are past the policy's
    # 7 days for whole chunks.
    old, old_bar, recent = days_ago(10), days_ago(20), days_ago(1)
    ticks = [tick(old, n) for n in range(20)] + [tick(recent, n) for n in range(5)]
    bars = [bar(old_bar, closed=False), bar(recent)]
    await batch_writer.write(conn, ticks, bars)
    await conn.close()
    for table in ("market_data_ticks", "market_data_ohlcv"):
        (job,) = job_ids(empty.database, "policy_compression", table)
        run_job(empty.database, job)
    # Only chunks wholly older than the policy's 7 days are compressed.
    tick_chunks = _compressed_chunks(empty.database, "market_data_ticks")
    assert [compressed for _, compressed in tick_chunks] == [True, False]
    bar_chunks = _compressed_chunks(empty.database, "market_data_ohlcv")
    assert bar_chunks[0][1] is True
    assert bar_chunks[-1][0] <= recent

    # Replay into the compressed chunks, with one new trade there and the old bar closed.
    conn = await connect(empty.database)
    await batch_writer.prepare(conn)
    late = tick(old, 20)
    result = await batch_writer.write(conn, [*ticks, late], [bar(old_bar, close="100.5"), bars[1]])
    await conn.close()
    assert (result.ticks_staged, result.ticks_inserted, result.bars_written) == (26, 1, 1)
    # The rows went into the compressed chunk (TimescaleDB keeps it compressed, partly).
    assert _compressed_chunks(empty.database, "market_data_ticks") == tick_chunks
    stored = _ticks(empty.database)
    assert len(stored) == 26
    assert stored[20][1:3] == (late.timestamp, "20")
    assert _bars(empty.database) == [
        ("BTCUSDT", old_bar, Decimal("100.5"), True),
        ("BTCUSDT", recent, Decimal("101"), True),
    ]


async def test_the_retention_policy_drops_chunks_older_than_configured(
    empty: Settings, writer: tuple[BatchWriter, AnyConnection]
) -> None:
    batch_writer, conn = writer
    expired, kept = days_ago(40), days_ago(20)
    await batch_writer.write(conn, [tick(expired, 0), tick(kept, 0)], [bar(expired), bar(kept)])
    await conn.close()
    for table in ("market_data_ticks", "market_data_ohlcv"):
        (job,) = job_ids(empty.database, "policy_retention", table)
        run_job(empty.database, job)
    # Ticks are kept 30 days, bars 400.
    assert [row[1] for row in _ticks(empty.database)] == [kept + timedelta(milliseconds=0)]
    assert [row[1] for row in _bars(empty.database)] == [expired, kept]
