"""bench/vision_files.py makes archives the importer reads as Binance's own: every row becomes a
record (none dead-lettered), the checksum file verifies, and the values are sane market data."""

from __future__ import annotations

import csv
import io
import itertools
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.vision_files import FIRST_TRADE_ID, kline_rows, write_klines, write_trades
from marketdata.records import Bar, Tick
from producers.binance.imports import _State, read_pages
from producers.binance.vision import parse_name, verify_checksum


def _records(path: Path) -> tuple[list[Tick | Bar], int]:
    pages = list(read_pages(path, parse_name(path), _State()))
    return [r for page in pages for r in page.records], sum(len(p.rejected) for p in pages)


def _csv(path: Path) -> list[list[str]]:
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [path.name.removesuffix(".zip") + ".csv"]
        text = archive.read(archive.namelist()[0]).decode()
    return list(csv.reader(io.StringIO(text)))


def test_a_day_of_trades_reads_as_spot_trades(tmp_path: Path) -> None:
    day = date(2024, 9, 21)
    path = write_trades(tmp_path, day, 3_000)
    assert path.name == "BTCUSDT-trades-2024-09-21.zip"
    assert verify_checksum(path)
    rows = _csv(path)
    records, rejected = _records(path)
    assert rejected == 0
    ticks = [r for r in records if isinstance(r, Tick)]
    assert len(ticks) == len(records) == len(rows) == 3_000
    assert all(len(row) == 7 and row[6] == "True" for row in rows)  # spot: isBestMatch, no header
    assert [t.trade_id for t in ticks] == [str(FIRST_TRADE_ID + n) for n in range(3_000)]
    for row, tick in zip(rows, ticks, strict=True):
        assert (tick.exchange, tick.symbol, tick.source) == ("BINANCE", "BTCUSDT", "binance.trade")
        assert tick.price == Decimal(row[1])
        assert tick.size == Decimal(row[2]) > 0
        assert Decimal(row[3]) == tick.price * tick.size  # quote quantity, exactly
        assert tick.side == ("sell" if row[5] == "True" else "buy")
    stamps = [t.timestamp for t in ticks]
    start = datetime(2024, 9, 21, tzinfo=UTC)
    assert stamps == sorted(stamps)
    assert start <= stamps[0]
    assert stamps[-1] < start + timedelta(1)
    assert len(set(stamps)) < len(stamps)  # fills of one order share a millisecond
    prices = [t.price for t in ticks]
    assert Decimal(50_000) < min(prices) < max(prices) < Decimal(80_000)


def test_a_month_of_klines_reads_as_closed_minute_bars(tmp_path: Path) -> None:
    paths = write_klines(tmp_path, 2024, 1)
    assert [p.name for p in paths] == ["BTCUSDT-1m-2024-01.zip"]
    bars: list[Bar] = []
    for path in paths:
        assert verify_checksum(path)
        assert all(len(row) == 12 for row in _csv(path))
        records, rejected = _records(path)
        assert rejected == 0
        bars += [r for r in records if isinstance(r, Bar)]
    assert len(bars) == kline_rows(2024, 1) == 31 * 1440
    assert kline_rows(2024, 12) == 366 * 1440
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert [b.timestamp for b in bars] == [start + timedelta(minutes=n) for n in range(len(bars))]
    for before, bar in itertools.pairwise(bars):
        assert bar.open == before.close  # one walk
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.closed
        assert bar.interval == "1m"
        assert bar.volume > 0
        assert bar.trade_count
