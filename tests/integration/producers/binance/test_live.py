"""Live Binance streams through the fake server and binance-connector into a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from marketdata import migrate
from marketdata.dlq import HEADER_REASON
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from producers.binance.connector import rest_client
from producers.binance.live import BinanceLive, Connection
from producers.publisher import Publisher
from producers.reconnect import ReconnectLoop, Timing
from sandbox import FIXTURES as RECORDINGS
from sandbox.binance import FakeBinance, kline_row
from sandbox.binance import kline_event as fake_kline_event
from tests.integration.polling import wait_until
from tests.integration.processors.support import (
    free_port,
    processor_process,
    read_bars,
    read_ticks,
    read_topic,
)
from tests.integration.roles import role_process
from tests.integration.sinks.support import running_sink

FIXTURES = RECORDINGS / "binance"
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


@contextlib.asynccontextmanager
async def streaming(
    settings: Settings, fake: FakeBinance, streams: list[str], **options: Any
) -> AsyncIterator[BinanceLive]:
    """The live producer, in this process, subscribed to ``streams`` of the fake."""
    await ensure_topics(settings, settings.topics.all())
    configured = settings.model_copy(update={"binance_api_base_url": fake.rest_url})
    producer = create_producer(configured)
    await producer.start()
    rest = rest_client(configured, time_unit=options.get("time_unit"))
    streamer = BinanceLive(
        fake.stream_url, rest, streams,
        Publisher(producer, configured.topics, stage="binance.live"),
        **{"watchdog_s": 3, **options},
    )  # fmt: skip
    timing = Timing(watchdog_s=streamer.stats.watchdog_s, max_backoff_s=1)
    stop = asyncio.Event()
    task = asyncio.create_task(ReconnectLoop[Connection](streamer, timing).run(stop))
    await _connected(fake, fake.subscriptions + 1)
    try:
        yield streamer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        rest.session.close()


@pytest.fixture
async def live(settings: Settings, fake: FakeBinance) -> AsyncIterator[BinanceLive]:
    """The live producer subscribed to BTCUSDT trades and 1m klines."""
    async with streaming(settings, fake, ["btcusdt@trade", "btcusdt@kline_1m"]) as streamer:
        yield streamer


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
    btcusdt = live.stats.instruments["BTCUSDT"]
    assert (btcusdt.reconnects, btcusdt.gaps_filled, btcusdt.gaps_unfilled) == (1, 1, 0)
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


async def _across_a_gap(
    live: BinanceLive, fake: FakeBinance, stream: str, event: Callable[[int], dict[str, Any]], *,
    record: Callable[[dict[str, Any]], None], refetched: Callable[[], int], missed: int,
) -> None:  # fmt: skip
    """Events 0-49 live; the next ``missed`` (more than one REST page) traded while the
    connection is down, only ``record``ed at the venue; then ten more live. Returns once
    ``refetched()`` counts the missed ones and the last ten are in."""
    for n in range(50):
        await fake.push(stream, event(n))
    await wait_until(lambda: live.stats.records >= 50, within=15, step=0.05)
    await fake.drop_connections()
    for n in range(50, 50 + missed):  # traded while we were away
        record(event(n))
    await _connected(fake, 2)
    await wait_until(lambda: refetched() >= missed, within=20, step=0.05)
    for n in range(50 + missed, 60 + missed):
        await fake.push(stream, event(n))
    await wait_until(lambda: live.stats.records >= 60, within=15, step=0.05)


async def test_trades_missed_during_a_gap_are_refetched(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    await _across_a_gap(live, fake, "btcusdt@trade", trade_event, record=fake.record_trade,
                        refetched=lambda: live.stats.gap_trades, missed=1450)  # fmt: skip
    ids = [int(t.trade_id) for t in await _ticks(settings)]
    assert sorted(set(ids)) == [1000 + n for n in range(1510)]  # nothing lost
    assert live.stats.unfilled_gaps == 0
    assert live.stats.instruments["BTCUSDT"].gap_records == 1450


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


async def test_a_stream_in_microseconds_keeps_its_microseconds(
    fake: FakeBinance, settings: Settings
) -> None:
    async with streaming(settings, fake, ["btcusdt@trade"], time_unit="MICROSECOND") as live:
        for n in range(5):  # the fake sends these in µs: the connection asked for them
            await fake.push("btcusdt@trade", trade_event(n))
        # A venue sending µs unasked, with the microseconds Binance has.
        await fake.push("btcusdt@trade", {**trade_event(5), "T": (T0_MS + 5) * 1000 + 7})
        await wait_until(lambda: live.stats.records >= 6, within=15, step=0.05)
    ticks = await _ticks(settings)
    assert [t.timestamp for t in ticks] == [
        *(T0 + timedelta(milliseconds=n) for n in range(5)),
        T0 + timedelta(milliseconds=5, microseconds=7),
    ]
    assert ticks[0].extras == {"buyer_maker": True, "event_time": (T0_MS + 2) * 1000}
    assert live.stats.malformed == 0


async def test_a_deeply_nested_frame_is_dead_lettered_and_the_stream_goes_on(
    live: BinanceLive, fake: FakeBinance, settings: Settings
) -> None:
    await fake.push_raw("[" * 100_000 + "]" * 100_000)
    await fake.push_raw(json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "s": 1e400}})
                        .replace("Infinity", "1" * 5000))  # fmt: skip
    await fake.push("btcusdt@trade", trade_event(1))
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.05)
    assert live.stats.malformed == 2
    letters = await read_topic(settings, settings.topics.dlq, until=2)
    assert [dict(m.headers)["mdp.origin"] for m in letters] == [b"binance.ws", b"binance.ws"]
    assert [t.trade_id for t in await _ticks(settings)] == ["1001"]


def agg_trade_event(n: int) -> dict[str, Any]:
    event = json.loads((FIXTURES / "aggTrade.json").read_text())
    return {**event, "s": "BTCUSDT", "a": 5000 + n, "f": 9000 + 2 * n, "l": 9001 + 2 * n,
            "T": T0_MS + n, "E": T0_MS + n + 1, "p": f"{3000 + n}.25"}  # fmt: skip


async def test_aggregate_trades_missed_during_a_gap_are_refetched_each_once(
    fake: FakeBinance, settings: Settings
) -> None:
    async with streaming(settings, fake, ["btcusdt@aggTrade"]) as live:
        await _across_a_gap(live, fake, "btcusdt@aggTrade", agg_trade_event,
                            record=fake.record_agg_trade,
                            refetched=lambda: live.stats.gap_agg_trades, missed=1250)  # fmt: skip
    ticks = await _ticks(settings)
    assert sorted(int(t.trade_id) for t in ticks) == [5000 + n for n in range(1310)]  # once each
    assert {t.source for t in ticks} == {"binance.aggTrade"}
    refetched = next(t for t in ticks if t.trade_id == "5700")
    assert refetched.timestamp == T0 + timedelta(milliseconds=700)
    assert refetched.extras == {"buyer_maker": False, "first_trade_id": 10400,
                                "last_trade_id": 10401}  # fmt: skip
    assert (live.stats.gap_agg_trades, live.stats.unfilled_gaps) == (1250, 0)


async def test_book_ticker_frames_received_on_two_connections_are_stored_once(
    fake: FakeBinance, settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    base = 400_900_000 + int.from_bytes(os.urandom(3)) * 1000  # update ids of this test's own
    frame = json.loads((FIXTURES / "bookTicker.json").read_text())
    async with streaming(settings, fake, ["bnbusdt@bookTicker"]) as live:
        # A second connection on the same streams, as during a rotation's overlap, held open.
        overlap = await live.open()
        try:
            await _connected(fake, 2)
            for n in range(100):
                await fake.push("bnbusdt@bookTicker", {**frame, "u": base + n})
                await asyncio.sleep(0.002)  # the copies arrive at different times
            await wait_until(lambda: live.stats.records >= 400, within=15, step=0.05)
        finally:
            await live.close(overlap)
    quotes = await _ticks(settings)
    assert len(quotes) == 400  # every frame twice, as received
    assert len({q.key for q in quotes}) == 200
    assert len({q.received_at for q in quotes}) > 100  # stamped by first arrival, not arrival
    await asyncio.to_thread(migrate.upgrade, settings)
    sink = {"sink_group": f"{settings.topic_prefix}sink", "metrics_port": 0, "sink_batch_ms": 100}
    processor = {"process_web_port": free_port()}
    processes.append(processor_process(settings.model_copy(update=processor), log))
    async with running_sink(settings.model_copy(update=sink)):
        await wait_for_stored(settings, base, 200)
        await asyncio.sleep(2)  # time for a duplicate to arrive, if one were going to
        stored = await asyncio.to_thread(count_quotes, settings, base)
    assert stored == 200


def count_quotes(settings: Settings, base: int) -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM market_data_ticks WHERE source = 'binance.bookTicker'"
            " AND split_part(trade_id, ':', 1)::bigint BETWEEN %s AND %s",
            (base, base + 99),
        ).fetchone()
    return int(row[0]) if row else 0


async def wait_for_stored(settings: Settings, base: int, count: int) -> None:
    for _ in range(300):  # 90 s
        if await asyncio.to_thread(count_quotes, settings, base) >= count:
            return
        await asyncio.sleep(0.3)
    raise TimeoutError(f"fewer than {count} quotes stored")


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def _stop_within_5s(process: subprocess.Popen[bytes], log: Path, port: int) -> None:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 20)
    took = time.monotonic() - started
    text = await asyncio.to_thread(log.read_text, errors="replace")
    assert (code, took < 5) == (0, True), f"exit {code} after {took:.1f}s"
    assert "ERROR" not in text
    assert "Traceback" not in text
    assert _port_is_free(port)


def _producer(env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    return role_process(
        ["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade,bookTicker"],
        {**env, "MDP_PRODUCER_METRICS_PORT": str(port)}, log,
    )  # fmt: skip


async def test_sigterm_ends_the_producer_within_5s_even_when_the_venue_ignores_the_close(
    fake: FakeBinance, settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())
    fake.deaf_to_close = True
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "BINANCE_API_BASE_URL": fake.rest_url,
           "BINANCE_STREAM_URL": fake.stream_url}  # fmt: skip
    processes.append(_producer(env, log, port))
    await _connected(fake, 1)
    for n in range(20):
        await fake.push("btcusdt@trade", trade_event(n))
    await wait_until(lambda: "subscribed" in log.read_text(), within=10)
    await _stop_within_5s(processes[0], log, port)
    assert [t.trade_id for t in await _ticks(settings)] == [str(1000 + n) for n in range(20)]
