"""What the producers' integration tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg

from marketdata import migrate
from marketdata.settings import Settings

_DELETE = "DELETE FROM market_data_ohlcv WHERE exchange = %s AND symbol = %s"
_INSERT = (
    "INSERT INTO market_data_ohlcv (exchange, symbol, interval, timestamp, open, high, low,"
    " close, volume, closed, source) VALUES (%s, %s, %s, %s, 1, 1, 1, 1, 1, true, 'test')"
)


@asynccontextmanager
async def stored_bar(
    settings: Settings, exchange: str, symbol: str, interval: str, at: datetime
) -> AsyncIterator[None]:
    """One bar of a series in the database, as an earlier run would have left it, for a resume
    to find; the series is cleared before and after."""

    def execute(query: str, params: tuple[object, ...]) -> None:
        with psycopg.connect(settings.database, autocommit=True) as conn:
            conn.execute(query, params)

    await asyncio.to_thread(migrate.upgrade, settings)
    await asyncio.to_thread(execute, _DELETE, (exchange, symbol))
    await asyncio.to_thread(execute, _INSERT, (exchange, symbol, interval, at))
    try:
        yield
    finally:
        await asyncio.to_thread(execute, _DELETE, (exchange, symbol))
