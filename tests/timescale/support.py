"""Settings, records and TimescaleDB job calls the smoke suite shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import psycopg

from marketdata.records import Bar, Tick
from marketdata.settings import Settings

# Compression after a week; ticks kept 30 days, bars 400: the suite writes on either side.
POLICIES: Final = {
    "MDP_COMPRESS_AFTER": "7 days",
    "MDP_TICKS_RETENTION": "30 days",
    "MDP_BARS_RETENTION": "400 days",
}


def timescale_settings(url: str, **extra: str) -> Settings:
    return Settings.from_env({"MARKET_DATA_DATABASE_URL": url, **POLICIES, **extra})


def days_ago(days: float) -> datetime:
    """A minute boundary ``days`` before now (UTC)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(days=days)


def tick(at: datetime, n: int, *, symbol: str = "BTCUSDT", price: str = "100") -> Tick:
    return Tick(
        exchange="BINANCE", symbol=symbol, timestamp=at + timedelta(milliseconds=n),
        source="trade", trade_id=str(n), price=Decimal(price) + n, size=Decimal("0.5"),
        side="buy" if n % 2 else "sell", received_at=at + timedelta(seconds=1),
        extras={"n": n},
    )  # fmt: skip


def bar(at: datetime, *, symbol: str = "BTCUSDT", close: str = "101", closed: bool = True) -> Bar:
    return Bar(
        exchange="BINANCE", symbol=symbol, interval="1m", timestamp=at,
        open=Decimal("100"), high=Decimal("102"), low=Decimal("99"), close=Decimal(close),
        volume=Decimal("12.5"), trade_count=40, closed=closed, source="kline",
    )  # fmt: skip


def job_ids(url: str, proc: str, table: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = %s AND hypertable_name = %s ORDER BY job_id",
            (proc, table),
        ).fetchall()
    return [row[0] for row in rows]


def run_job(url: str, job_id: int) -> None:
    """What TimescaleDB's scheduler would do; PGlite runs no background workers."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CALL run_job(%s)", (job_id,))
