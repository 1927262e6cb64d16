"""The database side: a real PostgreSQL server, reached the way every role reaches it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from marketdata.database import connect, enable_timescaledb
from marketdata.errors import TransientError
from marketdata.settings import Settings
from tests.strategies import sample_tick


async def test_connects_and_speaks_postgresql_15_or_newer(settings: Settings) -> None:
    conn = await connect(settings.database)
    async with conn:
        row = await (await conn.execute("SHOW server_version_num")).fetchone()
    assert row is not None
    assert int(str(row[0])) >= 150000


async def test_binary_copy_round_trips_a_tick_exactly(settings: Settings, unique: str) -> None:
    tick = sample_tick()
    table = sql.Identifier(unique)
    conn = await connect(settings.database)
    async with conn:
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (exchange text, symbol text, timestamp timestamptz,"
                " trade_id text, price numeric, size numeric)"
            ).format(table)
        )
        async with conn.cursor() as cur:
            copy_sql = sql.SQL(
                "COPY {} (exchange, symbol, timestamp, trade_id, price, size) FROM STDIN BINARY"
            ).format(table)
            async with cur.copy(copy_sql) as copy:
                copy.set_types(["text", "text", "timestamptz", "text", "numeric", "numeric"])
                await copy.write_row(
                    (tick.exchange, tick.symbol, tick.timestamp, tick.trade_id, tick.price,
                     tick.size)
                )  # fmt: skip
            await cur.execute(sql.SQL("SELECT * FROM {}").format(table))
            rows = await cur.fetchall()
    assert rows == [
        ("BINANCE", "BTCUSDT", datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), "3417562101",
         Decimal("61234.56000000"), Decimal("0.00150000"))
    ]  # fmt: skip


async def test_an_unreachable_server_is_one_clear_retriable_error() -> None:
    with pytest.raises(TransientError) as caught:
        await connect("postgresql://nobody@127.0.0.1:1/none")
    assert caught.value.retriable
    assert str(caught.value).startswith("cannot connect to PostgreSQL: ")
    assert "\n" not in str(caught.value)


def test_timescaledb_detection_matches_the_server(settings: Settings) -> None:
    with psycopg.connect(settings.database, autocommit=True) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    assert available is not None
    assert enable_timescaledb(settings.database) is (available[0] == 1)
