"""What the database holds: rows and the newest timestamp per series (`mdp status`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from marketdata.errors import TransientError
from marketdata.settings import Settings

_TICKS = (
    "SELECT exchange, symbol, '' AS interval, count(*), max(timestamp) FROM market_data_ticks"
    " GROUP BY exchange, symbol ORDER BY exchange, symbol"
)
_BARS = (
    "SELECT exchange, symbol, interval, count(*), max(timestamp) FROM market_data_ohlcv"
    " GROUP BY exchange, symbol, interval ORDER BY exchange, symbol, interval"
)


@dataclass(frozen=True, slots=True)
class Series:
    kind: str  # "ticks" or "bars"
    exchange: str
    symbol: str
    interval: str  # "" for ticks
    rows: int
    newest: datetime


def stored_series(settings: Settings) -> list[Series]:
    """Every tick series and bar series in the database, with its row count and newest time."""
    try:
        with psycopg.connect(settings.database, connect_timeout=10) as conn:
            ticks = conn.execute(_TICKS).fetchall()
            bars = conn.execute(_BARS).fetchall()
    except psycopg.OperationalError as exc:
        raise TransientError(f"database {settings.database.split('@')[-1]}: {exc}") from None
    return [Series("ticks", *row) for row in ticks] + [Series("bars", *row) for row in bars]


def describe(series: list[Series]) -> str:
    """A table of the series, one line each, and the totals."""
    if not series:
        return "no data stored yet"
    header = ("kind", "exchange", "symbol", "interval", "rows", "newest (UTC)")
    rows = [(s.kind, s.exchange, s.symbol, s.interval or "-", f"{s.rows:,}",
             f"{s.newest:%Y-%m-%d %H:%M:%S.%f}"[:-3]) for s in series]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i < 4 else str(v).rjust(w) if i == 4 else str(v)
                       for i, (v, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]  # fmt: skip
    ticks = sum(s.rows for s in series if s.kind == "ticks")
    bars = sum(s.rows for s in series if s.kind == "bars")
    lines.append(f"total: {ticks:,} ticks, {bars:,} bars in {len(series)} series")
    return "\n".join(lines)
