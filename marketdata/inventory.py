"""What the database holds: rows and newest timestamp per series (`mdp status`), and the bounds
of one series, where a resumed backfill starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString, cast

import psycopg

from marketdata.database import connect
from marketdata.errors import ConfigError
from marketdata.settings import Settings

_TICKS = (
    "SELECT exchange, symbol, '' AS interval, '' AS source, count(*), max(timestamp)"
    " FROM market_data_ticks GROUP BY exchange, symbol ORDER BY exchange, symbol"
)
# A bar series is its source's: a venue's bars and those derived from its trades are two.
_BARS = (
    "SELECT exchange, symbol, interval, source, count(*), max(timestamp) FROM market_data_ohlcv"
    " GROUP BY exchange, symbol, interval, source ORDER BY exchange, symbol, interval, source"
)


_Row = tuple[str, str, str, str, int, datetime]


@dataclass(frozen=True, slots=True)
class Series:
    kind: str  # "ticks" or "bars"
    exchange: str
    symbol: str
    interval: str  # "" for ticks
    source: str  # "" for ticks (every source of an instrument's ticks together)
    rows: int
    newest: datetime


@asynccontextmanager
async def _tables_needed() -> AsyncIterator[None]:
    """A database without the tables is a step not taken, not a crash: say which step."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        first = str(exc).strip().splitlines()[0]
        message = f"the market-data tables are missing ({first}): run `mdp migrate`"
        raise ConfigError(message) from exc


async def stored_series(settings: Settings) -> list[Series]:
    """Every tick series and bar series in the database, with its row count and newest time."""
    async with await connect(settings.database) as conn, _tables_needed():
        ticks = await (await conn.execute(_TICKS)).fetchall()
        bars = await (await conn.execute(_BARS)).fetchall()
    rows = [("ticks", row) for row in ticks] + [("bars", row) for row in bars]
    return [Series(kind, *cast(_Row, row)) for kind, row in rows]


# Where a resumed backfill starts: the bounds of what one series has stored.


async def newest_bar(
    settings: Settings, exchange: str, symbol: str, interval: str, source: str
) -> datetime | None:
    """The open time of the series' newest stored bar from ``source``, if any (bars derived
    from trades are another series: they say nothing of what the venue's bars cover)."""
    return await _value(settings, "SELECT max(timestamp) FROM market_data_ohlcv"
                        " WHERE exchange = %s AND symbol = %s AND interval = %s AND source = %s",
                        (exchange, symbol, interval, source))  # fmt: skip


async def newest_tick(
    settings: Settings, exchange: str, symbol: str, source: str
) -> datetime | None:
    """The time of the series' newest stored tick from ``source``, if any."""
    return await _value(settings, "SELECT max(timestamp) FROM market_data_ticks"
                        " WHERE exchange = %s AND symbol = %s AND source = %s",
                        (exchange, symbol, source))  # fmt: skip


async def newest_trade(
    settings: Settings, exchange: str, symbol: str, source: str
) -> tuple[datetime, str] | None:
    """The time and trade id of the series' newest stored tick from ``source``, if any; of
    trades sharing that time, the highest id (numeric ids compare by length, then digits)."""
    async with await connect(settings.database) as conn, _tables_needed():
        cursor = await conn.execute(
            "SELECT timestamp, trade_id FROM market_data_ticks"
            " WHERE exchange = %s AND symbol = %s AND source = %s"
            " ORDER BY timestamp DESC, length(trade_id) DESC, trade_id DESC LIMIT 1",
            (exchange, symbol, source),
        )
        row = await cursor.fetchone()
    if row is None or not isinstance(row[0], datetime):
        return None
    return row[0], str(row[1])


async def oldest_bar(
    settings: Settings,
    exchange: str,
    symbol: str,
    interval: str,
    source: str,
    *,
    start: datetime,
    end: datetime,
) -> datetime | None:
    """The open time of the series' oldest bar from ``source`` stored within ``[start, end)``,
    if any."""
    return await _value(settings, "SELECT min(timestamp) FROM market_data_ohlcv"
                        " WHERE exchange = %s AND symbol = %s AND interval = %s AND source = %s"
                        " AND timestamp >= %s AND timestamp < %s",
                        (exchange, symbol, interval, source, start, end))  # fmt: skip


async def _value(
    settings: Settings, query: LiteralString, params: tuple[object, ...]
) -> datetime | None:
    async with await connect(settings.database) as conn, _tables_needed():
        row = await (await conn.execute(query, params)).fetchone()
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None


def describe(series: list[Series]) -> str:
    """A table of the series, one line each, and the totals."""
    if not series:
        return "no data stored yet"
    header = ("kind", "exchange", "symbol", "interval", "source", "rows", "newest (UTC)")
    rows = [(s.kind, s.exchange, s.symbol, s.interval or "-", s.source or "-", f"{s.rows:,}",
             f"{s.newest:%Y-%m-%d %H:%M:%S.%f}"[:-3]) for s in series]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i < 5 else str(v).rjust(w) if i == 5 else str(v)
                       for i, (v, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]  # fmt: skip
    ticks = sum(s.rows for s in series if s.kind == "ticks")
    bars = sum(s.rows for s in series if s.kind == "bars")
    lines.append(f"total: {ticks:,} ticks, {bars:,} bars in {len(series)} series")
    return "\n".join(lines)
