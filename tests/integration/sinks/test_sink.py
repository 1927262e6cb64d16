"""The sink against a real broker and a real PostgreSQL server, in this process."""

from __future__ import annotations

import asyncio
import urllib.request
from decimal import Decimal

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from marketdata.dlq import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from marketdata.settings import Settings
from tests.integration.polling import wait_until
from tests.integration.sinks.support import (
    bar_messages,
    count_rows,
    make_bar,
    make_ticks,
    metric,
    publish,
    running_sink,
    tick_messages,
    wait_for_rows,
)
from tests.integration.tcp_proxy import TcpProxy

TICK_SELECT = (
    "SELECT exchange, symbol, timestamp, source, trade_id, price, size, side, received_at, extras"
    " FROM market_data_ticks ORDER BY trade_id::int"
)


def _stored_ticks(settings: Settings) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database) as conn:
        return conn.execute(TICK_SELECT).fetchall()


async def test_single_records_and_batches_are_stored_field_for_field(
    sink_settings: Settings,
) -> None:
    ticks = make_ticks(500)
    messages = tick_messages(ticks[:100], per_message=1) + tick_messages(ticks[100:], 50)
    await publish(sink_settings, sink_settings.topics.ticks, messages)
    bars = [make_bar(0), make_bar(1, closed=False)]
    await publish(sink_settings, sink_settings.topics.bars, bar_messages(bars))

    async with running_sink(sink_settings):
        assert await wait_for_rows(sink_settings, 500) == 500
        assert await wait_for_rows(sink_settings, 2, "market_data_ohlcv") == 2

    expected = [
        (t.exchange, t.symbol, t.timestamp, t.source, t.trade_id, t.price, t.size, t.side,
         t.received_at, t.extras)
        for t in ticks
    ]  # fmt: skip
    assert _stored_ticks(sink_settings) == expected
    with psycopg.connect(sink_settings.database) as conn:
        stored_bars = conn.execute(
            "SELECT exchange, symbol, interval, timestamp, open, high, low, close, volume,"
            " trade_count, closed, source FROM market_data_ohlcv ORDER BY timestamp"
        ).fetchall()
    assert stored_bars == [
        (b.exchange, b.symbol, b.interval, b.timestamp, b.open, b.high, b.low, b.close, b.volume,
         b.trade_count, b.closed, b.source)
        for b in bars
    ]  # fmt: skip


async def test_messages_delivered_twice_are_stored_once(sink_settings: Settings) -> None:
    ticks = make_ticks(300)
    messages = tick_messages(ticks, per_message=20)
    async with running_sink(sink_settings):
        await publish(sink_settings, sink_settings.topics.ticks, messages)
        assert await wait_for_rows(sink_settings, 300) == 300
        first = _stored_ticks(sink_settings)
        await publish(sink_settings, sink_settings.topics.ticks, messages)  # a producer replay
        await publish(sink_settings, sink_settings.topics.ticks, messages[:3] * 4)
        await asyncio.sleep(1.0)
    assert _stored_ticks(sink_settings) == first
    assert len(first) == 300


async def test_later_bar_versions_replace_earlier_ones_but_never_a_closed_bar(
    sink_settings: Settings,
) -> None:
    live = make_bar(0, closed=False, close="100.5")
    final = make_bar(0, closed=True, close="101.5")
    stale_replay = make_bar(0, closed=False, close="100.0")
    async with running_sink(sink_settings) as sink:
        await publish(sink_settings, sink_settings.topics.bars, bar_messages([live]))
        await wait_for_rows(sink_settings, 1, "market_data_ohlcv")
        await publish(sink_settings, sink_settings.topics.bars, bar_messages([final, stale_replay]))
        await wait_until(lambda: metric(sink, "mdp_sink_messages_total") >= 3)
        await asyncio.sleep(0.5)
    with psycopg.connect(sink_settings.database) as conn:
        rows = conn.execute("SELECT close, closed FROM market_data_ohlcv").fetchall()
    assert rows == [(Decimal("101.5"), True)]


async def test_poison_messages_go_to_the_dlq_and_the_good_ones_are_stored(
    sink_settings: Settings, unique: str
) -> None:
    good = tick_messages(make_ticks(200), per_message=10)
    poison: list[tuple[bytes | None, bytes]] = [
        (b"BINANCE:SYM0", b"\x00\xff not json"),
        (b"BINANCE:SYM1", b'{"kind":"ticks","v":1,"records":[{"exchange":"BINANCE"}]}'),
        (b"BINANCE:SYM2", b'{"kind":"ticks","v":9,"records":[]}'),
        (None, b""),
    ]
    mixed = good[:5] + poison[:2] + good[5:12] + poison[2:] + good[12:]
    await publish(sink_settings, sink_settings.topics.ticks, mixed)
    async with running_sink(sink_settings) as sink:
        assert await wait_for_rows(sink_settings, 200) == 200
        await wait_until(lambda: metric(sink, "mdp_sink_dead_letters_total") >= len(poison))

    consumer = AIOKafkaConsumer(
        sink_settings.topics.dlq, bootstrap_servers=sink_settings.kafka_bootstrap,
        group_id=f"{unique}-dlq-reader", auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        letters: list[ConsumerRecord] = []
        async with asyncio.timeout(30):
            while len(letters) < len(poison):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    letters.extend(batch)
    finally:
        await consumer.stop()
    assert sorted(m.value for m in letters) == sorted(value for _, value in poison)
    for letter in letters:
        headers = dict(letter.headers)
        assert headers[HEADER_TOPIC] == sink_settings.topics.ticks.encode()
        assert int(headers[HEADER_PARTITION]) >= 0
        assert int(headers[HEADER_OFFSET]) >= 0
        assert headers[HEADER_REASON]
    reasons = {m.value: dict(m.headers)[HEADER_REASON].decode() for m in letters}
    assert "malformed JSON" in reasons[b"\x00\xff not json"]
    assert "symbol" in reasons[poison[1][1]]
    assert "schema version 9" in reasons[poison[2][1]]
    assert "empty" in reasons[b""]


async def test_a_database_outage_pauses_then_resumes_without_loss(
    sink_settings: Settings,
) -> None:
    host_port = sink_settings.database.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    through_proxy = sink_settings.model_copy(
        update={
            "database_url": sink_settings.database.replace(host_port, f"127.0.0.1:{proxy.port}")
        }
    )
    ticks = make_ticks(3200)  # 400 a symbol: every message holds 10
    messages = tick_messages(ticks, per_message=10)
    try:
        async with running_sink(through_proxy) as sink:
            await publish(sink_settings, sink_settings.topics.ticks, messages[:100])
            assert await wait_for_rows(sink_settings, 1000) == 1000
            await proxy.cut()
            await publish(sink_settings, sink_settings.topics.ticks, messages[100:])
            await asyncio.sleep(3)
            assert count_rows(sink_settings) == 1000  # nothing got through the outage
            assert not sink.ready()
            assert metric(sink, "mdp_sink_retries_total") >= 1
            await proxy.restore()
            assert await wait_for_rows(sink_settings, 3200) == 3200
            assert sink.ready()
    finally:
        await proxy.aclose()
    assert len({row[4] for row in _stored_ticks(sink_settings)}) == 3200


async def test_metrics_and_health_are_served(sink_settings: Settings) -> None:
    messages = tick_messages(make_ticks(50), 10)
    await publish(sink_settings, sink_settings.topics.ticks, messages)
    async with running_sink(sink_settings) as sink:
        assert await wait_for_rows(sink_settings, 50) == 50
        base = f"http://127.0.0.1:{sink.metrics_port}"
        await asyncio.sleep(1.2)  # one lag measurement
        health = await asyncio.to_thread(urllib.request.urlopen, f"{base}/health", timeout=5)
        text = (
            (await asyncio.to_thread(urllib.request.urlopen, f"{base}/metrics", timeout=5))
            .read()
            .decode()
        )
    assert health.status == 200
    assert 'mdp_sink_rows_written_total{table="market_data_ticks"} 50.0' in text
    assert f"mdp_sink_messages_total {len(messages)}.0" in text
    assert "mdp_sink_batches_total" in text
    assert "mdp_sink_consumer_lag{" in text
