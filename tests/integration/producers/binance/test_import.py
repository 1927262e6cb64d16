"""`mdp import binance-vision` into a real broker, through `mdp process` and `mdp sink` into
PostgreSQL: every row of the fixture archives (rows from Binance's documentation, see
tests/fixtures/binance_vision/make.py) stored with the file's values; the same archive twice,
or a day of dumps and then a REST backfill over it, stores each bar and each trade once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from marketdata.dlq import HEADER_REASON
from producers.binance.imports import import_dumps, local_sources
from sandbox.binance import FakeBinance, kline_row
from tests.e2e.conftest import Pipeline
from tests.integration.processors.support import read_topic
from tests.unit.producers.binance.vision_files import FIXTURES, MICROS, csv_rows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLY = datetime(2017, 1, 1, tzinfo=UTC)
LATE = datetime(2025, 2, 1, tzinfo=UTC)
# (exchange, symbol) of every series in the fixtures.
SERIES = [("BINANCE", "BTCUSDT"), ("BINANCE-UM", "BTCUSDT"), ("BINANCE-UM", "BNBUSDT"),
          ("BINANCE-CM", "BTCUSD_PERP"), ("BINANCE-CM", "BTCUSD_200626")]  # fmt: skip


def _time(text: str) -> datetime:
    return EPOCH + timedelta(microseconds=int(text) * (1000 if len(text) == 13 else 1))


def _side(text: str) -> str:
    return "sell" if text.lower() == "true" else "buy"


def _clear(settings_db: str) -> None:
    """This test's series as no earlier run left them (the fixtures' times are fixed)."""
    with psycopg.connect(settings_db, autocommit=True) as conn:
        for exchange, symbol in SERIES:
            for table in ("market_data_ticks", "market_data_ohlcv"):
                conn.execute(f"DELETE FROM {table} WHERE exchange = %s AND symbol = %s"  # noqa: S608
                             " AND timestamp >= %s AND timestamp < %s",
                             (exchange, symbol, EARLY, LATE))  # fmt: skip


def _trades(path: Path, source: str = "binance.trade") -> list[tuple[Any, ...]]:
    if source == "binance.aggTrade":
        return [(r[0], _time(r[5]), Decimal(r[1]), Decimal(r[2]), _side(r[6]), source)
                for r in csv_rows(path)]  # fmt: skip
    return [(r[0], _time(r[4]), Decimal(r[1]), Decimal(r[2]), _side(r[5]), source)
            for r in csv_rows(path)]  # fmt: skip


def _quotes(path: Path) -> list[tuple[Any, ...]]:
    return [(f"{r[0]}:{side}", _time(r[5]), Decimal(price), Decimal(size), side,
             "binance.bookTicker")
            for r in csv_rows(path)
            for side, price, size in (("ask", r[3], r[4]), ("bid", r[1], r[2]))]  # fmt: skip


def _bars(path: Path) -> list[tuple[Any, ...]]:
    return [(_time(r[0]), *map(Decimal, r[1:6]), int(r[8]), True) for r in csv_rows(path)]


def _ordered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda row: (row[1], row[0]) if isinstance(row[0], str) else row)


async def _run_cli(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    # From the event loop that serves the fake venue, so that the fake can answer.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **pipeline.env, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def test_every_row_of_every_kind_and_market_is_stored_as_the_file_says(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    await asyncio.to_thread(_clear, pipeline.settings.database)
    bad = tmp_path / "BTCUSDT-trades-2024-03-02.csv"
    bad.write_text("7,1.5,2,3,1709337600000,True,True\n8,abc,2,3,1709337600001,True,True\n")
    code, stdout, stderr = await _run_cli(pipeline, "import", "binance-vision",
                                          str(FIXTURES / "data"), str(bad))  # fmt: skip
    assert code == 0, stderr
    assert "rows/s" in stderr
    assert "MB/s" in stderr
    assert stdout.startswith("17 records from 11 files (0.0 MB, 10 checksum-verified) published")
    assert "; 1 malformed rows dead-lettered to" in stdout

    spot, um, cm = (FIXTURES / "data/spot", FIXTURES / "data/futures/um",
                    FIXTURES / "data/futures/cm")  # fmt: skip
    ticks = {
        ("BINANCE", "BTCUSDT"): [
            *_trades(spot / "monthly/trades/BTCUSDT/BTCUSDT-trades-2024-03.zip"),
            *_trades(spot / "daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip",
                     "binance.aggTrade"),
            ("7", _time("1709337600000"), Decimal("1.5"), Decimal(2), "sell", "binance.trade"),
        ],
        ("BINANCE-UM", "BTCUSDT"): [
            *_trades(um / "monthly/trades/BTCUSDT/BTCUSDT-trades-2017-07.zip"),
            *_trades(um / "monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2017-06.zip",
                     "binance.aggTrade"),
        ],
        ("BINANCE-UM", "BNBUSDT"): _quotes(
            um / "daily/bookTicker/BNBUSDT/BNBUSDT-bookTicker-2019-09-09.zip"),
        ("BINANCE-CM", "BTCUSD_PERP"): _trades(
            cm / "monthly/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2020-06.zip"),
        ("BINANCE-CM", "BTCUSD_200626"): _quotes(
            cm / "daily/bookTicker/BTCUSD_200626/BTCUSD_200626-bookTicker-2020-06-04.zip"),
    }  # fmt: skip
    for (exchange, symbol), expected in ticks.items():
        stored = await pipeline.ticks(exchange, symbol, EARLY, LATE, at_least=len(expected))
        assert stored == _ordered(expected), (exchange, symbol)
    bars = {
        ("BINANCE", "1m"): _bars(spot / "monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip"),
        ("BINANCE-UM", "1w"): _bars(um / "monthly/klines/BTCUSDT/1w/BTCUSDT-1w-2017-07.zip"),
    }
    for (exchange, interval), expected in bars.items():
        stored = await pipeline.bars(exchange, "BTCUSDT", interval, EARLY, LATE,
                                     at_least=len(expected))  # fmt: skip
        assert stored == expected
    cm_bars = _bars(cm / "monthly/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2020-06.zip")
    assert await pipeline.bars("BINANCE-CM", "BTCUSD_PERP", "1m", EARLY, LATE,
                               at_least=1) == cm_bars  # fmt: skip

    [letter] = await read_topic(pipeline.settings, pipeline.settings.topics.dlq, until=1)
    assert letter.value == b"8,abc,2,3,1709337600001,True,True"
    headers = dict(letter.headers)
    assert headers[HEADER_REASON] == (b"BTCUSDT-trades-2024-03-02.csv:2: price: not a number: "
                                      b"'abc'")  # fmt: skip
    assert headers["mdp.origin"] == b"binance.vision"


async def test_the_same_archives_twice_store_each_bar_and_trade_once_to_the_microsecond(
    pipeline: Pipeline,
) -> None:
    await asyncio.to_thread(_clear, pipeline.settings.database)
    files = local_sources([MICROS])
    first = await import_dumps(pipeline.settings, files)
    again = await import_dumps(pipeline.settings, files)
    assert first.published == again.published == 6
    expected = _ordered([*_trades(MICROS / "BTCUSDT-trades-2025-01.zip"),
                         *_trades(MICROS / "BTCUSDT-aggTrades-2025-01-01.zip",
                                  "binance.aggTrade")])  # fmt: skip
    assert [row[1].microsecond for row in expected] == [153999, 590456, 583123, 1]
    stored = await pipeline.ticks("BINANCE", "BTCUSDT", EARLY, LATE, at_least=4)
    bars = await pipeline.bars("BINANCE", "BTCUSDT", "1m", EARLY, LATE, at_least=2)
    await asyncio.sleep(2)  # a second copy of anything would show now
    assert await pipeline.ticks("BINANCE", "BTCUSDT", EARLY, LATE, at_least=4) == stored
    assert stored == expected
    assert bars == _bars(MICROS / "BTCUSDT-1m-2025-01.zip")
    assert await pipeline.bars("BINANCE", "BTCUSDT", "1m", EARLY, LATE, at_least=2) == bars


DAY = datetime(2024, 3, 1, tzinfo=UTC)


def _day_of_dumps(folder: Path) -> tuple[Path, Path, list[list[Any]]]:
    """A day of BTCUSDT 1m klines as the fake venue serves them over REST, and a day of trades,
    written as Binance's spot dumps (no header, ms)."""
    start_ms = int(DAY.timestamp() * 1000)
    klines = [kline_row("BTCUSDT", "1m", start_ms + n * 60_000) for n in range(1440)]
    trades = [[str(9000 + n), f"{61000 + n % 97}.{n % 100:02d}000000", f"0.{n % 9 + 1:03d}00000",
               "1.0", str(start_ms + n * 43_200), "True" if n % 3 == 0 else "False", "True"]
              for n in range(2000)]  # fmt: skip
    written = []
    for name, rows in (("BTCUSDT-1m-2024-03-01", klines), ("BTCUSDT-trades-2024-03-01", trades)):
        path = folder / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.csv", "".join(",".join(map(str, r)) + "\n" for r in rows))
        written.append(path)
    return written[0], written[1], klines


async def test_a_day_of_dumps_then_a_rest_backfill_over_it_stores_each_bar_and_trade_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    await asyncio.to_thread(_clear, pipeline.settings.database)
    klines_zip, trades_zip, _ = _day_of_dumps(tmp_path)
    result = await import_dumps(pipeline.settings, [klines_zip, trades_zip])
    assert (result.published, result.rejected) == (1440 + 2000, 0)
    fake = FakeBinance(now_ms=int((DAY + timedelta(days=3)).timestamp() * 1000))
    await fake.start()
    try:
        code, stdout, stderr = await _run_cli(
            pipeline, "backfill", "binance", "--symbol", "BTCUSDT", "--interval", "1m",
            "--start", "2024-03-01T12:00", "--end", "2024-03-02T01:59",
            env={"BINANCE_API_BASE_URL": fake.rest_url},
        )  # fmt: skip
    finally:
        await fake.aclose()
    assert code == 0, stderr
    assert stdout.startswith("840 bars of BTCUSDT 1m from 2024-03-01 12:00 published")
    end = DAY + timedelta(hours=26)
    bars = await pipeline.bars("BINANCE", "BTCUSDT", "1m", DAY, end, at_least=1440 + 120)
    await asyncio.sleep(2)
    assert await pipeline.bars("BINANCE", "BTCUSDT", "1m", DAY, end, at_least=1560) == bars
    start_ms = int(DAY.timestamp() * 1000)
    assert bars == [
        (_time(str(r[0])), *map(Decimal, r[1:6]), r[8], True)
        for r in (kline_row("BTCUSDT", "1m", start_ms + n * 60_000) for n in range(1560))
    ]
    ticks = await pipeline.ticks("BINANCE", "BTCUSDT", DAY, end, at_least=2000)
    assert len(ticks) == len({row[0] for row in ticks}) == 2000
