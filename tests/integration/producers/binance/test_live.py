"""Live Binance streams through the fake server and binance-connector into a real broker."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from marketdata.dlq import HEADER_REASON
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from producers.binance.backfill import rest_client
from producers.binance.live import BinanceLive
from producers.publisher import Publisher
from tests.fakes.binance import FakeBinance, kline_row
from tests.fakes.binance import kline_event as fake_kline_event
from tests.integration.polling import wait_until
from tests.integration.processors.support import read_bars, read_ticks, read_topic
from tests.integration.roles import role_process

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "binance"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def trade_event(n: int) -> dict[str, Any]:
    event = json.loads((FIXTURES / "trade.json").read_text())["data"]
    return {**event, "t": 1000 + n, "T": T0_MS + n, "E": T0_MS + n + 2, "p": f"{61000 + n}.5"}


def kline_event(minute: int, *, closed: bool = True) -> dict[str, Any]:
    return fake_kline_event("BTCUSDT", "1m", T0_MS + minute * 60_000, closed=closed)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = FakeBinance(now_ms=T0_MS + 10 * 60_000 + 30_000)  # 12:10:30
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def live(settings: Settings, fake: FakeBinance) -> AsyncIterator[BinanceLive]:
    """The live producer, in this process, subscribed to BTCUSDT trades and 1m klines."""
    await ensure_topics(settings, settings.topics.all())
    configured = settings.model_copy(update={"binance_api_base_url": fake.rest_url})
    producer = create_producer(configured)
    await producer.start()
    rest = rest_client(configured)
    streamer = BinanceLive(
        fake.stream_url, rest, ["btcusdt@trade", "btcusdt@kline_1m"],
        Publisher(producer, configured.topics, stage="binance.live"), watchdog_s=3,
        max_backoff_s=1,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(streamer.run(stop))
    await _connected(fake, 1)
    try:
        yield streamer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        rest.session.close()


async def _connected(fake: FakeBinance, count: int) -> None:
    await wait_until(lambda: fake.subscriptions >= count, within=15, step=0.05)


async def _ticks(settings: Settings) -> list[Tick]:
    return await read_ticks(settings, settings.topics.ticks_raw)


async def _bars(settings: Settings) -> list[Bar]:
    return await read_bars(settings, settings.topics.bars_raw)


async def test_every_trade_arrives_once_with_its_fields(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    for n in range(200):
        await fake.push("btcusdt@trade", trade_event(n))
    await wait_until(lambda: live.stats.records >= 200, within=15, step=0.05)
    ticks = await _ticks(settings)
    assert [t.trade_id for t in ticks] == [str(1000 + n) for n in range(200)]
    first = ticks[0]
    assert (first.exchange, first.symbol, first.source, first.side) == (
        "BINANCE",
        "BTCUSDT",
        "binance.trade",
        "sell",
    )
    assert first.timestamp == T0
    assert str(first.price) == "61000.5"
    assert first.extras == {"buyer_maker": True, "event_time": T0_MS + 2}


async def test_a_dropped_connection_reconnects_and_backfills_the_missed_closed_bars(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    for minute in range(5):
        await fake.push("btcusdt@kline_1m", kline_event(minute))
    await wait_until(lambda: live.stats.records >= 5, within=15, step=0.05)
    await fake.drop_connections()  # minutes 5..9 close while we are away
    await _connected(fake, 2)
    await wait_until(lambda: live.stats.gap_bars >= 5, within=20, step=0.05)
    await fake.push("btcusdt@kline_1m", kline_event(10, closed=False))
    bars = await _bars(settings)
    closed = sorted({b.timestamp for b in bars if b.closed})
    assert closed == [T0 + timedelta(minutes=m) for m in range(10)]
    assert live.stats.reconnects == 1
    assert len(live.stats.gaps) == 1
    by_minute = {b.timestamp: b for b in bars if b.closed}
    row = kline_row("BTCUSDT", "1m", T0_MS + 7 * 60_000)
    assert str(by_minute[T0 + timedelta(minutes=7)].close) == row[4]


async def test_a_silent_connection_is_replaced(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    fake.mute = True  # frames stop; the connection stays open
    await _connected(fake, 2)
    assert live.stats.reconnects >= 1


async def test_malformed_frames_are_dead_lettered_and_the_stream_goes_on(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    await fake.push_raw("{not json")
    await fake.push("btcusdt@trade", {"e": "trade", "s": "BTCUSDT"})
    await fake.push("btcusdt@trade", trade_event(1))
    await wait_until(
        lambda: live.stats.records >= 1 and live.stats.malformed >= 2, within=15, step=0.05
    )
    letters = await read_topic(settings, settings.topics.dlq, until=2)
    reasons = sorted(dict(m.headers)[HEADER_REASON].decode() for m in letters)
    assert any("malformed Binance message: JSON is malformed" in r for r in reasons)
    assert any("side: missing" in r for r in reasons)
    assert [t.trade_id for t in await _ticks(settings)] == ["1001"]


async def test_rotation_opens_the_new_connection_before_closing_the_old(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    live.rotate_s = 0.5  # Binance's limit is 24 h; rotate now
    await _connected(fake, 2)
    await wait_until(lambda: live.stats.rotations >= 1, within=15, step=0.05)
    live.rotate_s = 3600
    for n in range(50):
        await fake.push("btcusdt@trade", trade_event(n))
    await wait_until(lambda: live.stats.records >= 50, within=15, step=0.05)
    assert live.stats.reconnects == 0  # a rotation is not a loss of connection
    assert {t.trade_id for t in await _ticks(settings)} == {str(1000 + n) for n in range(50)}


async def test_a_server_shutdown_event_rotates_the_connection(
    live: BinanceLive, fake: FakeBinance
) -> None:
    await fake.push("btcusdt@trade", {"e": "serverShutdown", "E": T0_MS})
    await _connected(fake, 2)
    await wait_until(lambda: live.stats.rotations >= 1, within=15, step=0.05)
    assert live.stats.reconnects == 0
    assert live.stats.malformed == 0


async def test_trades_missed_during_a_gap_are_refetched(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    for n in range(50):
        await fake.push("btcusdt@trade", trade_event(n))
    await wait_until(lambda: live.stats.records >= 50, within=15, step=0.05)
    await fake.drop_connections()
    for n in range(50, 1500):  # traded while we were away: more than one REST page
        fake.record_trade(trade_event(n))
    await _connected(fake, 2)
    await wait_until(lambda: live.stats.gap_trades >= 1450, within=20, step=0.05)
    for n in range(1500, 1510):
        await fake.push("btcusdt@trade", trade_event(n))
    await wait_until(lambda: live.stats.records >= 60, within=15, step=0.05)
    ids = [int(t.trade_id) for t in await _ticks(settings)]
    assert sorted(set(ids)) == [1000 + n for n in range(1510)]  # nothing lost
    assert live.stats.unfilled_gaps == 0


async def test_the_producer_process_streams_and_stops_cleanly(
    fake: FakeBinance,
    settings: Settings,
    log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    await ensure_topics(settings, settings.topics.all())
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "BINANCE_API_BASE_URL": fake.rest_url,
           "BINANCE_STREAM_URL": fake.stream_url}  # fmt: skip
    process = role_process(["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade"],
                           env, log)  # fmt: skip
    processes.append(process)
    await _connected(fake, 1)
    await asyncio.sleep(0.3)
    for n in range(20):
        await fake.push("btcusdt@trade", trade_event(n))
    ticks = await _ticks(settings)
    assert [t.trade_id for t in ticks] == [str(1000 + n) for n in range(20)]
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
