from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from marketdata.errors import MarketDataError
from marketdata.signals import stop_on_signals
from marketdata.topics import Topics
from producers.process import PublisherMetrics
from producers.publisher import Publisher
from tests.strategies import sample_tick


def test_the_publishers_counts_are_read_when_scraped() -> None:
    publisher = Publisher(cast(AIOKafkaProducer, cast(Any, None)), Topics(""), stage="ibkr.live")
    registry = CollectorRegistry()
    registry.register(PublisherMetrics(publisher))
    labels = {"stage": "ibkr.live"}
    assert registry.get_sample_value("mdp_producer_records_total", labels) == 0
    publisher.sent_records, publisher.dead_letters = 1234, 5
    assert registry.get_sample_value("mdp_producer_records_total", labels) == 1234
    assert registry.get_sample_value("mdp_producer_dead_letters_total", labels) == 5


class Broker:
    """The producer's ``send`` as an I/O seam: each send's future is answered by the test (or
    never, as by a broker that is away)."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


def _publisher(broker: Broker, drain_s: float = 0.3) -> Publisher:
    return Publisher(cast(AIOKafkaProducer, broker), Topics(""), stage="dtc.live",
                     max_records=2, drain_s=drain_s)  # fmt: skip


async def test_after_a_stop_signal_the_drain_gives_up_in_time_and_counts_what_was_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    publisher = _publisher(broker)
    stop = stop_on_signals()
    await publisher.add([sample_tick(trade_id=str(n)) for n in range(5)])  # 3 sends (2, 2, 1)
    broker.futures[0].set_result(None)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stop.wait(), 5)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="producers.publisher"):
        await publisher.flush(wait=True)  # a venue loop's last flush: no error, no wait past it
        lost = await publisher.drain()
    assert time.monotonic() - started < 1.0
    assert lost == 3
    assert [r.getMessage() for r in caplog.records] == [
        "dtc.live: 3 records could not be delivered to Kafka (2 delivered)"
    ]


async def test_without_a_stop_a_refused_send_is_raised_and_counted() -> None:
    broker = Broker()
    publisher = _publisher(broker)
    await publisher.add([sample_tick(trade_id=str(n)) for n in range(4)])
    broker.futures[0].set_result(None)
    broker.futures[1].set_exception(MessageSizeTooLargeError())
    with pytest.raises(MarketDataError, match="MessageSizeTooLargeError"):
        await publisher.flush(wait=True)
    assert await publisher.drain() == 2


async def test_a_drain_with_everything_acknowledged_says_so_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    publisher = _publisher(broker)
    await publisher.add([sample_tick(trade_id="1")])
    answer = asyncio.get_running_loop().call_later(0.05, lambda: broker.futures[0].set_result(None))
    with caplog.at_level(logging.INFO, logger="producers.publisher"):
        assert await publisher.drain() == 0
    answer.cancel()
    assert [r.getMessage() for r in caplog.records] == [
        "dtc.live: 0 records could not be delivered to Kafka (1 delivered)"
    ]
