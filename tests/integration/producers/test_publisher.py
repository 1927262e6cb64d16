"""The publisher's adaptive batching against the real broker, through a real AIOKafkaProducer:
an instrument's records go at once when nothing of it is in flight, and gather behind a send the
broker has not acknowledged yet; the time cap (``linger_s``) is set far away here, so what
arrives cannot have been sent by it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bench.publisher_cost import one_run
from marketdata.codec import decode
from marketdata.errors import MarketDataError
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from producers import publisher as publisher_module
from producers.publisher import Publisher
from tests.integration.polling import wait_until
from tests.integration.processors.support import read_topic
from tests.strategies import sample_tick

FAR_S = 600.0  # a time cap no test waits for


def tick(n: int, symbol: str = "BTCUSDT", **changes: object) -> Tick:
    start = sample_tick().timestamp
    return sample_tick(trade_id=str(n), symbol=symbol, timestamp=start + timedelta(seconds=n),
                       **changes)  # fmt: skip


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    await ensure_topics(settings, settings.topics.all())
    producer = create_producer(settings)
    await producer.start()
    try:
        yield Publisher(producer, settings.topics, stage="test", max_records=100,
                        linger_s=FAR_S)  # fmt: skip
    finally:
        await producer.stop()


async def envelopes(settings: Settings, count: int) -> list[list[str]]:
    """The first ``count`` messages of the raw ticks topic, as their records' trade ids."""
    messages = await read_topic(settings, settings.topics.ticks_raw, until=count, within=30)
    return [[_trade_id(record) for record in decode(message.value).records]
            for message in messages]  # fmt: skip


def _trade_id(record: object) -> str:
    assert isinstance(record, Tick)
    return record.trade_id


async def test_a_single_record_is_sent_at_once_without_a_flush(
    settings: Settings, publisher: Publisher
) -> None:
    await publisher.add([tick(1)])
    # No flush, and a time cap ten minutes away: only the rule "nothing in flight: send now"
    # can have put it on the topic.
    assert await envelopes(settings, 1) == [["1"]]
    assert await publisher.drain() == 0


async def test_records_arriving_while_a_send_is_in_flight_gather_into_one_envelope(
    settings: Settings, publisher: Publisher
) -> None:
    await publisher.add([tick(0)])
    # The first send is in the producer's hands (at least its 5 ms linger, then the broker's
    # round trip): nothing here yields to the loop that would read the answer.
    for n in range(1, 10):
        await publisher.add([tick(n)])
    assert await envelopes(settings, 2) == [["0"], [str(n) for n in range(1, 10)]]
    assert publisher.sent_records == 10
    assert await publisher.drain() == 0


async def test_a_full_envelope_does_not_wait_for_the_send_in_flight(settings: Settings) -> None:
    await ensure_topics(settings, settings.topics.all())
    producer = create_producer(settings)
    await producer.start()
    try:
        publisher = Publisher(producer, settings.topics, stage="test", max_records=3,
                              linger_s=FAR_S)  # fmt: skip
        await publisher.add([tick(0)])
        for n in range(1, 5):
            await publisher.add([tick(n)])
        # 1-3 went as soon as they were 3 (the size cap), 4 once the sends ahead were answered.
        assert await envelopes(settings, 3) == [["0"], ["1", "2", "3"], ["4"]]
        assert await publisher.drain() == 0
    finally:
        await producer.stop()


async def test_each_instruments_records_keep_their_order_whichever_path_sends_them(
    settings: Settings,
) -> None:
    await ensure_topics(settings, settings.topics.all())
    producer = create_producer(settings)
    await producer.start()
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    sent: dict[str, list[str]] = {symbol: [] for symbol in symbols}
    shuffle = random.Random(20)
    try:
        # A short time cap and a small size cap, so that the caller, the answers and the time
        # cap all send, interleaved.
        publisher = Publisher(producer, settings.topics, stage="test", max_records=7,
                              linger_s=0.002)  # fmt: skip
        for n in range(3000):
            symbol = shuffle.choice(symbols)
            sent[symbol].append(str(n))
            await publisher.add([tick(n, symbol)])
            if n % 97 == 0:
                await asyncio.sleep(0.003)
            elif n % 13 == 0:
                await asyncio.sleep(0)
            if n % 500 == 0:
                await publisher.flush()
        await publisher.flush(wait=True)
        messages = await read_topic(settings, settings.topics.ticks_raw, idle_s=2.0, within=60)
        got: dict[str, list[str]] = {symbol: [] for symbol in symbols}
        for message in messages:
            records = decode(message.value).records
            assert 1 <= len(records) <= 7
            (symbol,) = {record.symbol for record in records}  # one instrument per envelope
            assert message.key == instrument_key("BINANCE", symbol)
            got[symbol].extend(map(_trade_id, records))
        assert got == sent
        assert len(messages) < 3000  # some records did gather
        assert publisher.sent_records == 3000
        assert await publisher.drain() == 0
    finally:
        await producer.stop()


async def test_a_gathered_envelope_the_broker_refuses_is_raised_to_the_next_caller_and_counted(
    settings: Settings,
) -> None:
    await ensure_topics(settings, settings.topics.all())
    producer = create_producer(settings, max_request_size=4096)
    await producer.start()
    try:
        publisher = Publisher(producer, settings.topics, stage="test", linger_s=FAR_S)
        await publisher.add([tick(0)])
        # Over this producer's request limit: refused when the answer to tick 0 sends it.
        await publisher.add([tick(1, extras={"padding": "x" * 10_000})])
        await wait_until(lambda: publisher.undelivered == 1, within=10, step=0.01)
        with pytest.raises(MarketDataError, match="MessageSizeTooLarge"):
            await publisher.add([tick(2)])
        await publisher.add([tick(3)])  # raised once: publishing goes on
        await publisher.flush(wait=True)
        assert await publisher.drain() == 1
        assert await envelopes(settings, 2) == [["0"], ["3"]]
    finally:
        await producer.stop()


@pytest.mark.parametrize("path", ["bulk", "feed"])
async def test_the_publisher_benchmark_accounts_for_every_record(
    settings: Settings, path: str
) -> None:
    figures = await one_run(path, publisher_module.__file__, 300, symbols=3, rate=2000,
                            linger_ms=50, settings=settings)  # fmt: skip
    # Every record was matched to the acknowledgement of the message that carried it.
    assert 1 <= figures["per_message"] <= 100
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
