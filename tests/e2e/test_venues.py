"""N known trades and bars through each fake venue, its producer, Kafka, the processor and the
sink into the database: exactly N, every field equal to the source, with the duplicates a
venue's reconnect replays injected on the way."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sandbox.binance import FakeBinance, kline_event, kline_row
from sandbox.dtc import FakeDtc, bar_record
from sandbox.tws import FakeTws, history_bar, recorded_trades
from tests.e2e.conftest import Pipeline
from tests.e2e.timeline import ms, own_minute
from tests.integration.polling import wait_until

N = 400


def binance_trade(t0_ms: int, n: int) -> dict[str, Any]:
    return {"e": "trade", "E": t0_ms + n * 3 + 1, "s": "BTCUSDT", "t": 7000 + n,
            "p": f"{61000 + n % 97}.{n % 100:02d}000000", "q": f"0.{n % 9 + 1:03d}00000",
            "T": t0_ms + n * 3, "m": n % 3 == 0, "M": True}  # fmt: skip


async def test_binance_trades_and_klines_land_exactly_once(pipeline: Pipeline) -> None:
    t0 = own_minute()
    t0_ms = ms(t0)
    fake = FakeBinance(now_ms=t0_ms + 5 * 60_000 + 30_000)  # minutes 0-4 closed
    await fake.start()
    try:
        pipeline.start("binance", ["produce", "binance", "--symbols", "BTCUSDT", "--streams",
                                   "trade,kline_1m", "--watchdog", "10"],
                       {"BINANCE_API_BASE_URL": fake.rest_url,
                        "BINANCE_STREAM_URL": fake.stream_url})  # fmt: skip
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        await asyncio.sleep(0.5)
        trades = [binance_trade(t0_ms, n) for n in range(N)]
        for trade in trades:
            await fake.push("btcusdt@trade", trade)
        for minute in range(5):
            await fake.push(
                "btcusdt@kline_1m", kline_event("BTCUSDT", "1m", t0_ms + minute * 60_000)
            )
        # The venue replays: a hundred trades again, then the connection drops; the reconnect
        # fetches the closed klines and the trades after the last id over REST once more.
        for trade in trades[:100]:
            await fake.push("btcusdt@trade", trade)
        await fake.drop_connections()
        await wait_until(lambda: fake.subscriptions >= 2, within=60)
        await asyncio.sleep(0.5)
        marker = binance_trade(t0_ms, N)
        await fake.push("btcusdt@trade", marker)

        rows = await pipeline.ticks("BINANCE", "BTCUSDT", t0, t0 + timedelta(minutes=1),
                                    at_least=N + 1)  # fmt: skip
        await asyncio.sleep(2)  # anything late would show now
        rows = await pipeline.ticks("BINANCE", "BTCUSDT", t0, t0 + timedelta(minutes=1),
                                    at_least=N + 1)  # fmt: skip
        assert rows == [
            (str(t["t"]), datetime.fromtimestamp(t["T"] / 1000, UTC), Decimal(t["p"]),
             Decimal(t["q"]), "sell" if t["m"] else "buy", "binance.trade")
            for t in [*trades, marker]
        ]  # fmt: skip
        bars = await pipeline.bars("BINANCE", "BTCUSDT", "1m", t0, t0 + timedelta(minutes=5),
                                   at_least=5)  # fmt: skip
        assert bars == [
            (datetime.fromtimestamp(r[0] / 1000, UTC), Decimal(r[1]), Decimal(r[2]),
             Decimal(r[3]), Decimal(r[4]), Decimal(r[5]), r[8], True)
            for r in (kline_row("BTCUSDT", "1m", t0_ms + m * 60_000) for m in range(5))
        ]  # fmt: skip
    finally:
        await fake.aclose()


async def test_ib_trades_and_bars_land_exactly_once(pipeline: Pipeline) -> None:
    # Real-time bars are stamped now (the reconnect fills up to now; a rerun rewrites the same
    # bars); trades take a minute of this test's own, as the other tests' series do.
    t0_s = int(time.time()) // 5 * 5 - 120
    t0 = datetime.fromtimestamp(t0_s, UTC)
    trades_t0 = own_minute()
    trades_s = int(trades_t0.timestamp())
    fake = FakeTws()
    await fake.start()
    try:
        pipeline.start("ibkr", ["produce", "ibkr", "--symbols", "STK:MSFT:SMART:USD"],
                       {"IBKR_PORT": str(fake.port)})  # fmt: skip
        await wait_until(lambda: bool(fake.subscribed("AllLast") and fake.subscribed("bars")),
                         within=30)  # fmt: skip
        recorded = recorded_trades()["AAPL"]
        trades = [(trades_s + n // 4, {**recorded[n % len(recorded)],
                                   "price": f"{189 + n % 50 / 100:.2f}"})
                  for n in range(N)]  # fmt: skip
        for at, trade in trades:
            fake.publish_trade("MSFT", at, trade)
        for k in range(6):
            fake.publish_bar("MSFT", t0_s + 5 * k)
        # TWS restarts: the connection drops; on the new one the venue sends the last bars
        # again, and the producer fetches the bars after the last one it saw.
        await asyncio.sleep(1)
        fake.drop()
        await wait_until(lambda: fake.count(50) >= 2, within=60)
        for k in range(6):
            fake.publish_bar("MSFT", t0_s + 5 * k)
        marker = (trades_s + N // 4 + 1, {**recorded[0], "price": "200.01"})
        fake.publish_trade("MSFT", *marker)

        end = trades_t0 + timedelta(seconds=N // 4 + 2)
        await pipeline.ticks("IBKR", "MSFT", trades_t0, end, at_least=N + 1)
        await asyncio.sleep(2)
        rows = await pipeline.ticks("IBKR", "MSFT", trades_t0, end, at_least=N + 1)
        assert len(rows) == N + 1
        assert len({row[0] for row in rows}) == N + 1  # identical prints in a second stay apart
        got = sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows)
        assert got == sorted(
            (datetime.fromtimestamp(at, UTC), Decimal(t["price"]), Decimal(t["size"]), None,
             "ibkr.AllLast") for at, t in [*trades, marker]
        )  # fmt: skip
        bars = await pipeline.bars("IBKR", "MSFT", "5s", t0, t0 + timedelta(seconds=30),
                                   at_least=6)  # fmt: skip
        assert bars == [
            (datetime.fromtimestamp(t0_s + 5 * k, UTC), *(Decimal(v) for v in b[:5]), b[6], True)
            for k, b in ((k, history_bar("MSFT", "5 secs", t0_s + 5 * k)) for k in range(6))
        ]  # fmt: skip
    finally:
        await fake.aclose()


def dtc_trade(t0_s: float, n: int) -> dict[str, Any]:
    return {"Price": 5000 + n % 40 / 4, "Volume": float(1 + n % 7),
            "DateTime": round(t0_s + n * 0.01, 3), "AtBidOrAsk": 1 + n % 2}  # fmt: skip


async def test_dtc_trades_and_history_bars_land_exactly_once(pipeline: Pipeline) -> None:
    t0 = own_minute()
    t0_s = t0.timestamp()
    fake = FakeDtc()
    await fake.start()
    try:
        dtc = {"DTC_PORT": str(fake.port), "DTC_HISTORICAL_PORT": str(fake.historical_port),
               "DTC_HEARTBEAT_S": "2"}  # fmt: skip
        pipeline.start("dtc", ["produce", "dtc", "--symbols", "ESZ4@CME"], dtc)
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        trades = [dtc_trade(t0_s, n) for n in range(N)]
        for trade in trades:
            await fake.trade("ESZ4", trade)
        # The connection drops; after the reconnect the server replays its last 50 trades.
        await asyncio.sleep(1)
        await fake.drop_connections()
        await wait_until(lambda: fake.subscriptions >= 2, within=60)
        for trade in trades[-50:]:
            await fake.trade("ESZ4", trade)
        marker = dtc_trade(t0_s, N)
        await fake.trade("ESZ4", marker)

        backfill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mdp", "backfill", "dtc", "--symbol", "ESZ4@CME",
            "--interval", "1m", "--start", f"{t0:%Y-%m-%dT%H:%M}",
            "--end", f"{t0 + timedelta(minutes=9):%Y-%m-%dT%H:%M}",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **pipeline.env, **dtc},
        )  # fmt: skip
        _, err = await asyncio.wait_for(backfill.communicate(), 120)
        assert backfill.returncode == 0, err.decode()

        end = t0 + timedelta(minutes=1)
        await pipeline.ticks("CME", "ESZ4", t0, end, at_least=N + 1)
        await asyncio.sleep(2)
        rows = await pipeline.ticks("CME", "ESZ4", t0, end, at_least=N + 1)
        assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
            (datetime.fromtimestamp(t["DateTime"], UTC), Decimal(str(t["Price"])),
             Decimal(str(t["Volume"])), "sell" if t["AtBidOrAsk"] == 1 else "buy", "dtc.trade")
            for t in [*trades, marker]
        ]  # fmt: skip
        bars = await pipeline.bars("CME", "ESZ4", "1m", t0, t0 + timedelta(minutes=10),
                                   at_least=10)  # fmt: skip
        records = [bar_record("ESZ4", 60, int(t0_s) + 60 * k) for k in range(10)]
        assert bars == [
            (datetime.fromtimestamp(r["StartDateTime"], UTC), Decimal(str(r["OpenPrice"])),
             Decimal(str(r["HighPrice"])), Decimal(str(r["LowPrice"])),
             Decimal(str(r["LastPrice"])), Decimal(str(r["Volume"])), r["NumTrades"], True)
            for r in records
        ]  # fmt: skip
    finally:
        await fake.aclose()
