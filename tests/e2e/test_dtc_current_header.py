"""The current DTC header's message variants (issue #18), packed by hand from the header
(``tests/dtc_frames.py``), sent by the fake Sierra Chart server to the producer process, and
through Kafka, the processor and the sink: the rows stored, field by field."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from marketdata.records import derived_trade_id
from producers.dtc import messages as m
from sandbox.dtc import FakeDtc
from tests import dtc_frames as f
from tests.e2e.conftest import Pipeline
from tests.e2e.timeline import own_minute
from tests.integration.polling import wait_until

_TICKS = (
    "SELECT exchange, symbol, timestamp, source, trade_id, price, size, side"
    " FROM market_data_ticks WHERE symbol = %s AND timestamp >= %s AND timestamp < %s"
)
_BARS = (
    "SELECT exchange, symbol, interval, timestamp, open, high, low, close, volume, trade_count,"
    " closed, source FROM market_data_ohlcv WHERE symbol = %s AND timestamp >= %s"
    " AND timestamp < %s ORDER BY timestamp"
)
Row = tuple[Any, ...]


def _ordered(rows: list[Row]) -> list[Row]:
    """Rows in time order; ties (the same instant) by source, side, price and id."""
    return sorted(rows, key=lambda r: (r[2], r[3], r[7] or "", r[5], r[4]))


def _tick(when: datetime, source: str, identity: tuple[object, ...],
          stored: tuple[str, str, str | None]) -> Row:  # fmt: skip
    """The row the producer must store: ``stored`` is its price, size and side; its id is
    derived from the trade's (or quote's) identity at its time, as ``producers.dtc.normalise``
    documents (a trade's as its history tick record's, so that a gap fill gives the same id)."""
    price, size, side = stored
    trade_id = derived_trade_id("ESZ4", when.isoformat(), *identity)
    return ("CME", "ESZ4", when, source, trade_id, Decimal(price), Decimal(size), side)


def _dtc_env(fake: FakeDtc) -> dict[str, str]:
    return {"DTC_PORT": str(fake.port), "DTC_HISTORICAL_PORT": str(fake.historical_port),
            "DTC_HEARTBEAT_S": "2"}  # fmt: skip


async def test_every_live_variant_of_the_current_header_is_stored(pipeline: Pipeline) -> None:
    t0 = own_minute()
    s = int(t0.timestamp())
    fake = FakeDtc()
    await fake.start()
    try:
        pipeline.start("dtc", ["produce", "dtc", "--symbols", "ESZ4@CME"], _dtc_env(fake))
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        [sid] = [r["SymbolID"] for r in fake.received
                 if r["Type"] == m.MARKET_DATA_REQUEST and r["Symbol"] == "ESZ4"]  # fmt: skip
        # 142 and 143 carry no time: each takes the prior trade's or quote's.
        trade_146 = f.trade_146(sid, price=5123.25, volume=3,
                                time_us=(s + 1) * 1_000_000 + 123_456, at=m.AT_BID)  # fmt: skip
        trade_142 = f.trade_142(sid, price=5123.0, volume=4, at=m.AT_ASK)
        quote_144 = f.bid_ask_144(sid, bid=5123.0, bid_size=7.0, ask=5123.5, ask_size=2.0,
                                  time_us=(s + 3) * 1_000_000 + 654_321)  # fmt: skip
        await fake.send_raw(
            f.last_trade_134(sid, price=5122.75, volume=2.0, time_s=s + 0.875)
            + trade_146
            + trade_146  # a second trade, identical
            + trade_142
            + f.trade_137(sid, price=5123.5, volume=7, time_s=s + 2.25, at=m.AT_BID, unbundled=1)
            + trade_142
            + quote_144
            + f.bid_ask_143(sid, bid=5123.25, bid_size=12, ask=5123.5, ask_size=30)
        )
        window = ("ESZ4", t0, t0 + timedelta(minutes=1))
        await pipeline.until(_TICKS, window, 10, 90)
        await asyncio.sleep(2)  # anything late or doubled would show now
        rows = await pipeline.until(_TICKS, window, 10, 90)
    finally:
        await fake.aclose()

    def at(seconds: int, micros: int) -> datetime:
        return t0 + timedelta(seconds=seconds, microseconds=micros)

    traded, again, quoted = at(1, 123_456), at(2, 250_000), at(3, 654_321)
    assert _ordered(rows) == _ordered([
        _tick(at(0, 875_000), "dtc.snapshot", (5122.75, 2.0, "last"), ("5122.75", "2", None)),
        # two identical trades in one microsecond: two rows
        _tick(traded, "dtc.trade", (5123.25, 3.0, m.AT_BID, 0), ("5123.25", "3", "sell")),
        _tick(traded, "dtc.trade", (5123.25, 3.0, m.AT_BID, 1), ("5123.25", "3", "sell")),
        _tick(traded, "dtc.trade", (5123.0, 4.0, m.AT_ASK, 0), ("5123", "4", "buy")),
        _tick(again, "dtc.trade", (5123.5, 7.0, m.AT_BID, 0), ("5123.5", "7", "sell")),
        _tick(again, "dtc.trade", (5123.0, 4.0, m.AT_ASK, 0), ("5123", "4", "buy")),
        _tick(quoted, "dtc.quote", ("bid", "5123", "7", 0), ("5123", "7", "bid")),
        _tick(quoted, "dtc.quote", ("ask", "5123.5", "2", 0), ("5123.5", "2", "ask")),
        _tick(quoted, "dtc.quote", ("bid", "5123.25", "12", 0), ("5123.25", "12", "bid")),
        _tick(quoted, "dtc.quote", ("ask", "5123.5", "30", 0), ("5123.5", "30", "ask")),
    ])  # fmt: skip


async def test_a_backfill_with_bars_in_microseconds_and_in_seconds_is_stored(
    pipeline: Pipeline,
) -> None:
    t0 = own_minute()
    s = int(t0.timestamp())
    starts = [s * 1_000_000, (s + 60) * 1_000_000, s + 120]  # µs, µs, then t_DateTime (s)
    bars = [  # open, high, low, close, volume, trades
        (3821.25, 3824.0, 3820.5, 3823.75, 1520.0, 311),
        (3823.75, 3823.75, 3818.25, 3819.0, 2044.0, 402),
        (3819.0, 3822.5, 3817.75, 3822.25, 987.0, 205),
    ]
    fake = FakeDtc(history_final_flag=False)
    fake.history_records = b"".join(
        f.bar_803(start, open_=o, high=h, low=lo, last=c, volume=v, num_trades=n)
        for start, (o, h, lo, c, v, n) in zip(starts, bars, strict=True)
    )
    fake.history_tail = f.trailer_807((s + 120) * 1_000_000)  # ends the response
    await fake.start()
    try:
        backfill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mdp", "backfill", "dtc", "--symbol", "ESZ4@CME",
            "--interval", "1m", "--start", f"{t0:%Y-%m-%dT%H:%M}",
            "--end", f"{t0 + timedelta(minutes=2):%Y-%m-%dT%H:%M}",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **pipeline.env, **_dtc_env(fake)},
        )  # fmt: skip
        out, err = await asyncio.wait_for(backfill.communicate(), 120)
    finally:
        await fake.aclose()
    assert backfill.returncode == 0, err.decode()
    assert "3 bars of ESZ4@CME 1m" in out.decode()
    assert "in 1 request" in out.decode()  # ended by the trailer, not asked again
    assert "dead-lettered" not in out.decode()
    assert "trailer" not in err.decode()  # its time is the last bar's: nothing went missing
    [request] = fake.history_requests
    assert request["UseZLibCompression"] == 1  # the records came in the zlib stream
    window = ("ESZ4", t0, t0 + timedelta(minutes=3))
    rows = await pipeline.until(_BARS, window, 3, 90)
    await asyncio.sleep(2)
    rows = await pipeline.until(_BARS, window, 3, 90)
    assert rows == [
        ("CME", "ESZ4", "1m", t0 + timedelta(minutes=n), Decimal(str(o)), Decimal(str(h)),
         Decimal(str(lo)), Decimal(str(c)), Decimal(str(v)), trades, True, "dtc.history")
        for n, (o, h, lo, c, v, trades) in enumerate(bars)
    ]  # fmt: skip
