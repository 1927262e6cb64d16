"""The project's Kafka clients and codec against a real broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from marketdata.codec import BarBatch, TickBatch, decode, encode_bars, encode_ticks
from marketdata.kafka import admin_client, create_consumer, create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from tests.strategies import sample_bar, sample_tick


async def _drain(
    consumer: AIOKafkaConsumer, count: int, within: float = 30.0
) -> list[ConsumerRecord]:
    received: list[ConsumerRecord] = []
    async with asyncio.timeout(within):
        while len(received) < count:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.extend(records)
    return received


async def test_ticks_and_bars_round_trip_through_the_broker(
    settings: Settings, unique: str
) -> None:
    topics = settings.topics
    assert set(await ensure_topics(settings, topics.all())) == set(topics.all())
    trades = [
        sample_tick(trade_id=str(n), symbol=symbol, price=sample_tick().price + n)
        for n, symbol in enumerate(["BTCUSDT", "ETHUSDT", "BTCUSDT", "SOLUSDT"])
    ]
    bar = sample_bar(symbol="ETHUSDT", closed=False, trade_count=None)

    producer = create_producer(settings)
    await producer.start()
    try:
        sends = [
            await producer.send(
                topics.ticks_raw,
                encode_ticks([tick]),
                key=instrument_key(tick.exchange, tick.symbol),
            )
            for tick in trades
        ]
        sends.append(
            await producer.send(topics.bars_raw, encode_bars([bar]), key=b"BINANCE:ETHUSDT")
        )
        metadata = await asyncio.gather(*sends)
    finally:
        await producer.stop()

    # One instrument, one partition: its records stay in order.
    partition_of = {trades[i].symbol: metadata[i].partition for i in range(len(trades))}
    assert metadata[0].partition == metadata[2].partition == partition_of["BTCUSDT"]

    consumer = create_consumer(settings, topics.ticks_raw, topics.bars_raw, group_id=unique)
    await consumer.start()
    try:
        received = await _drain(consumer, len(trades) + 1)
        await consumer.commit()
    finally:
        await consumer.stop()

    got_ticks: list[Tick] = []
    got_bars = []
    for message in received:
        batch = decode(message.value)
        if isinstance(batch, TickBatch):
            assert message.topic == topics.ticks_raw
            (tick,) = batch.records
            assert message.key == instrument_key(tick.exchange, tick.symbol)
            assert message.partition == partition_of[tick.symbol]
            got_ticks.append(tick)
        else:
            assert isinstance(batch, BarBatch)
            got_bars.extend(batch.records)
    # Every field, as sent: the records compare field by field, and so does each named here.
    assert sorted(got_ticks, key=lambda t: t.trade_id) == trades
    for sent, got in zip(trades, sorted(got_ticks, key=lambda t: t.trade_id), strict=True):
        assert (got.price, got.size, got.side, got.timestamp, got.received_at, got.extras) == (
            sent.price, sent.size, sent.side, sent.timestamp, sent.received_at, sent.extras,
        )  # fmt: skip
    assert got_bars == [bar]


async def test_idempotent_producer_gets_a_producer_id_from_the_broker(settings: Settings) -> None:
    (topic,) = await ensure_topics(settings, [settings.topics.ticks_raw])
    producer = create_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode_ticks([sample_tick()]), key=b"BINANCE:BTCUSDT")
        # InitProducerId succeeded: the broker will drop a retried duplicate of this batch.
        assert producer._txn_manager is not None
        assert producer._txn_manager.producer_id >= 0
    finally:
        await producer.stop()


async def test_a_consumer_group_shares_partitions_and_reads_each_message_once(
    settings: Settings, unique: str
) -> None:
    topic = settings.topics.ticks
    await ensure_topics(settings, [topic], partitions=4)
    ticks = [sample_tick(symbol=f"SYM{n % 8}", trade_id=str(n)) for n in range(200)]
    producer = create_producer(settings)
    await producer.start()
    try:
        for tick in ticks:
            await producer.send(
                topic, encode_ticks([tick]), key=instrument_key("BINANCE", tick.symbol)
            )
        await producer.flush()
    finally:
        await producer.stop()

    first = create_consumer(settings, topic, group_id=unique, max_poll_interval_ms=30_000)
    second = create_consumer(settings, topic, group_id=unique, max_poll_interval_ms=30_000)
    await first.start()
    await second.start()
    try:
        # Both members joined once each holds part of the 4 partitions.
        async with asyncio.timeout(30):
            while len(first.assignment()) + len(second.assignment()) != 4 or not (
                first.assignment() and second.assignment()
            ):
                await asyncio.gather(first.getmany(timeout_ms=200), second.getmany(timeout_ms=200))
        for member in (first, second):
            await member.seek_to_beginning()
        seen: dict[TopicPartition, list[str]] = defaultdict(list)
        async with asyncio.timeout(30):
            while sum(len(v) for v in seen.values()) < len(ticks):
                for member in (first, second):
                    for tp, messages in (await member.getmany(timeout_ms=200)).items():
                        for message in messages:
                            batch = decode(message.value)
                            assert isinstance(batch, TickBatch)
                            seen[tp].extend(tick.trade_id for tick in batch.records)
        assert first.assignment().isdisjoint(second.assignment())
    finally:
        await first.stop()
        await second.stop()
    ids = [trade_id for ids in seen.values() for trade_id in ids]
    assert sorted(ids, key=int) == [str(n) for n in range(200)]


async def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    names = list(settings.topics.all())
    assert sorted(await ensure_topics(settings, names, partitions=3)) == sorted(names)
    assert await ensure_topics(settings, names, partitions=3) == []
    async with admin_client(settings) as admin:
        described = await admin.describe_topics(names)
    assert {d["topic"]: len(d["partitions"]) for d in described} == dict.fromkeys(names, 3)
