"""`mdp backfill binance --trades|--agg-trades` against the Binance-compatible fake, through a
real broker, the processor and the sink into PostgreSQL: every trade stored once, exactly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from producers.binance.backfill import backfill_trades
from producers.binance.run import run_live
from sandbox.binance import FakeBinance
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port, processor_process
from tests.integration.sinks.support import running_sink

SYMBOL = "ETHUSDT"
DAY = datetime(2024, 3, 5, 10, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COUNT = 1500  # aggregate trades, of two trades each: pages of 1000 on both endpoints
STEP_US = 1_500_123  # 1.5 s and some µs apart: times with every digit of the µs


def at(n: int) -> datetime:
    return DAY + timedelta(microseconds=n * STEP_US + 456)


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def agg_event(n: int) -> dict[str, Any]:
    return {"e": "aggTrade", "E": us(at(n)), "s": SYMBOL, "a": 700 + n, "p": f"{3000 + n}.{n:04d}",
            "q": f"{n % 7}.{n:05d}", "f": 9000 + 2 * n, "l": 9001 + 2 * n, "T": us(at(n)),
            "m": n % 3 == 0, "M": True}  # fmt: skip


def trade_events(n: int) -> list[dict[str, Any]]:
    agg = agg_event(n)
    return [{"e": "trade", "E": agg["T"], "s": SYMBOL, "t": agg["f"] + k, "p": agg["p"],
             "q": f"0.{n:04d}{k}", "T": agg["T"], "m": agg["m"], "M": True}
            for k in (0, 1)]  # fmt: skip


Row = tuple[str, datetime, Decimal, Decimal, str]


def venue_rows(kind: str, first: int, last: int) -> list[Row]:
    """What the venue holds for aggregate trades ``first`` … ``last`` (by number), as rows."""
    rows: list[Row] = []
    for n in range(first, last + 1):
        events = [agg_event(n)] if kind == "aggTrades" else trade_events(n)
        rows += [(str(e["a" if kind == "aggTrades" else "t"]), at(n), Decimal(e["p"]),
                  Decimal(e["q"]), "sell" if e["m"] else "buy") for e in events]  # fmt: skip
    return rows


_SOURCE = {"trades": "binance.trade", "aggTrades": "binance.aggTrade"}


def stored(settings: Settings, kind: str) -> list[Row]:
    with psycopg.connect(settings.database) as conn:
        rows = conn.execute(
            "SELECT trade_id, timestamp, price, size, side FROM market_data_ticks"
            " WHERE exchange = 'BINANCE' AND symbol = %s AND source = %s"
            " ORDER BY timestamp, trade_id::bigint",
            (SYMBOL, _SOURCE[kind]),
        ).fetchall()
    return [(r[0], r[1].astimezone(UTC), r[2], r[3], r[4]) for r in rows]


def clear(settings: Settings) -> None:
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute("DELETE FROM market_data_ticks WHERE exchange = 'BINANCE' AND symbol = %s",
                     (SYMBOL,))  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = FakeBinance(now_ms=us(DAY + timedelta(days=1)) // 1000)
    await server.start()
    for n in range(COUNT):
        server.record_agg_trade(agg_event(n))
        for event in trade_events(n):
            server.record_trade(event)
    yield server
    await server.aclose()


@pytest.fixture
async def binance(settings: Settings, fake: FakeBinance) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    await asyncio.to_thread(migrate.upgrade, settings)
    await asyncio.to_thread(clear, settings)
    return settings.model_copy(
        update={"binance_api_base_url": fake.rest_url, "binance_stream_url": fake.stream_url}
    )


@asynccontextmanager
async def pipeline(
    settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> AsyncIterator[None]:
    """The processor (a process) and the sink (in this process) storing what is published."""
    processes.append(processor_process(settings, log, web_port=free_port()))
    sink = {"sink_group": f"{settings.topic_prefix}sink", "metrics_port": 0, "sink_batch_ms": 100}
    async with running_sink(settings.model_copy(update=sink)):
        yield


async def stored_settled(settings: Settings, kind: str, count: int) -> list[Row]:
    """The stored rows once ``count`` are in, and a moment later (a duplicate would show)."""
    await wait_until(lambda: len(stored(settings, kind)) >= count, within=90, step=0.3)
    await asyncio.sleep(2)
    return await asyncio.to_thread(stored, settings, kind)


async def test_trades_and_agg_trades_backfilled_twice_are_stored_once_exactly(
    binance: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    start, end = at(100), at(1300)
    async with pipeline(binance, processes, log):
        for kind in ("trades", "aggTrades"):
            for _ in range(2):  # the second run stores nothing new
                result = await backfill_trades(binance, SYMBOL.lower(), kind, start, end)
                assert result.records == len(venue_rows(kind, 100, 1300))
        trades = await stored_settled(binance, "trades", len(venue_rows("trades", 100, 1300)))
        aggs = await stored_settled(binance, "aggTrades", len(venue_rows("aggTrades", 100, 1300)))
    assert trades == venue_rows("trades", 100, 1300)  # every field, to the µs, once each
    assert aggs == venue_rows("aggTrades", 100, 1300)


async def test_resume_goes_on_after_the_newest_stored_trade(
    binance: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    async with pipeline(binance, processes, log):
        await backfill_trades(binance, SYMBOL, "aggTrades", at(0), at(599))
        await stored_settled(binance, "aggTrades", 600)
        result = await backfill_trades(binance, SYMBOL, "aggTrades", at(0), at(1499), resume=True)
        assert (result.start, result.records) == (at(599), 900)
        assert result.requests == 2  # the server's time, then by id from aggregate trade 1300
        rows = await stored_settled(binance, "aggTrades", 1500)
    assert rows == venue_rows("aggTrades", 0, 1499)


async def test_a_backfill_over_live_trades_stores_each_once_to_the_microsecond(
    binance: Settings, fake: FakeBinance, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    assert binance.binance_time_unit == "microsecond"  # the default
    stop = asyncio.Event()
    subscribed = fake.subscriptions
    # A watchdog longer than the test: a reconnect's gap fill would fetch trades beyond the range.
    live = asyncio.create_task(run_live(binance, [SYMBOL], ["trade"], stop=stop, watchdog_s=120))
    try:
        await wait_until(lambda: fake.subscriptions > subscribed, within=15, step=0.05)
        async with pipeline(binance, processes, log):
            for n in range(1000, 1100):  # trades the venue has, pushed live as well
                for event in trade_events(n):
                    await fake.push(f"{SYMBOL.lower()}@trade", event)
            await stored_settled(binance, "trades", 200)
            await backfill_trades(binance, SYMBOL, "trades", at(950), at(1149))
            rows = await stored_settled(binance, "trades", 400)
    finally:
        stop.set()
        await asyncio.wait_for(live, 30)
    assert rows == venue_rows("trades", 950, 1149)
    assert rows[0][1] == datetime(2024, 3, 5, 10, 23, 45, 117306, tzinfo=UTC)  # at(950)


async def _mdp(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "backfill", "binance", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **settings.to_env()},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def test_cli_backfills_trades_with_a_summary(binance: Settings) -> None:
    code, out, err = await _mdp(binance, "--symbol", SYMBOL, "--agg-trades", "--start",
                                "2024-03-05T10:00", "--end", "2024-03-05T10:10")  # fmt: skip
    assert code == 0, err
    assert f"400 trades of {SYMBOL} tick from 2024-03-05 10:00 published" in out  # 600 s / 1.5
    assert f"{SYMBOL} aggTrades" in err  # the progress bar's label


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trades", "--interval", "1m"], "--trades takes no --interval"),
        (["--agg-trades", "--end", "2024-03-04"], "--start 2024-03-05 00:00:00 is after --end"),
        (["--trades", "--agg-trades"], "give one of --trades and --agg-trades"),
        ([], "give --interval for klines, or --trades or --agg-trades"),
    ],
)
async def test_cli_refuses_what_makes_no_sense_in_one_line(
    binance: Settings, args: list[str], message: str
) -> None:
    code, out, err = await _mdp(binance, "--symbol", SYMBOL, "--start", "2024-03-05", *args)
    assert (code, out) == (1, "")
    assert err.startswith(f"mdp: error: {message}"), err
    assert err.count("\n") == 1, err


async def test_cli_an_unknown_symbol_is_binances_own_message(binance: Settings) -> None:
    code, _, err = await _mdp(binance, "--symbol", "NOPE", "--trades", "--start", "2024-03-05")
    assert code == 1
    assert err.strip().endswith("mdp: error: Binance: Invalid symbol. (code -1121)"), err
