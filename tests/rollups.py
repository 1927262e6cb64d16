"""Rollups of 1m bars computed independently of the database, and the stored ones read back:
the oracle that the plain-PostgreSQL job and TimescaleDB's continuous aggregates both match."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import psycopg
from psycopg import sql

from marketdata import migrate
from marketdata.database import connect
from marketdata.records import Bar
from marketdata.settings import Settings
from sinks.writer import BatchWriter

ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # time_bucket's, for timestamptz
Row = tuple[object, ...]


def sample_bars(start: datetime, minutes: int, seed: int = 7) -> list[Bar]:
    """1m bars of two instruments with gaps, one with unknown trade counts now and then, and
    an hourly kline the rollups must ignore; one instrument's minutes also as bars derived from
    its trades (another source, other volumes): a series of their own in the rollups."""
    rng = random.Random(seed)
    bars: list[Bar] = []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        price = Decimal(rng.randint(100, 50_000))
        for minute in range(minutes):
            if rng.random() < 0.1:
                continue
            moves = [Decimal(rng.randint(-50, 50)) / 10 for _ in range(3)]
            open_, close = price, price + moves[0]
            high = max(open_, close) + abs(moves[1])
            low = min(open_, close) - abs(moves[2])
            count = None if symbol == "ETHUSDT" and rng.random() < 0.05 else rng.randint(1, 500)
            bars.append(
                Bar(
                    exchange="BINANCE", symbol=symbol, interval="1m",
                    timestamp=start + timedelta(minutes=minute), open=open_, high=high, low=low,
                    close=close, volume=Decimal(rng.randint(0, 10**6)) / 1000, trade_count=count,
                    closed=True, source="kline",
                )
            )  # fmt: skip
            if symbol == "BTCUSDT":
                bars.append(
                    msgspec.structs.replace(
                        bars[-1], source="derived.trades", volume=bars[-1].volume + 1,
                        trade_count=(count or 0) + 1, vwap=low,
                    )
                )  # fmt: skip
            price = close
        bars.append(
            Bar(
                exchange="BINANCE", symbol=symbol, interval="1h", timestamp=start,
                open=Decimal(1), high=Decimal(10**6), low=Decimal(0), close=Decimal(1),
                volume=Decimal(10**9), trade_count=1, closed=True, source="kline",
            )
        )  # fmt: skip
    return bars


def expected(bars: Iterable[Bar], width: timedelta) -> list[Row]:
    """(exchange, symbol, source, bucket, open, high, low, close, volume, trade_count, bars)
    rows: a bucket per source, as a bar's key holds its source."""
    buckets: dict[tuple[str, str, str, datetime], list[Bar]] = {}
    latest = {(b.exchange, b.symbol, b.source, b.timestamp): b for b in bars if b.interval == "1m"}
    for bar in latest.values():
        bucket = ORIGIN + (bar.timestamp - ORIGIN) // width * width
        buckets.setdefault((bar.exchange, bar.symbol, bar.source, bucket), []).append(bar)
    rows: list[Row] = []
    for key in sorted(buckets):
        group = sorted(buckets[key], key=lambda b: b.timestamp)
        counts = [b.trade_count for b in group]
        rows.append(
            (
                *key, group[0].open, max(b.high for b in group), min(b.low for b in group),
                group[-1].close, sum((b.volume for b in group), Decimal(0)),
                None if None in counts else sum(c for c in counts if c is not None), len(group),
            )
        )  # fmt: skip
    return rows


def stored(url: str, table: str) -> list[Row]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            sql.SQL(
                'SELECT exchange, symbol, source, "timestamp", open, high, low, close, volume,'
                " trade_count, bars FROM {} ORDER BY 1, 2, 3, 4"
            ).format(sql.Identifier(table))
        ).fetchall()


def write(url: str, bars: list[Bar]) -> None:
    """Store ``bars`` as the sink does (its BatchWriter), on a connection of its own."""

    async def run() -> None:
        conn = await connect(url)
        try:
            writer = BatchWriter()
            await writer.prepare(conn)
            await writer.write(conn, [], bars)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def plain_database(server_url: str, name: str, spec: str) -> Iterator[Settings]:
    """A migrated database ``name`` on the plain PostgreSQL at ``server_url``, dropped after."""
    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        settings = Settings.from_env(
            {"MARKET_DATA_DATABASE_URL": f"{base}/{name}", "MDP_ROLLUP_INTERVALS": spec}
        )
        migrate.upgrade(settings)
        yield settings
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
