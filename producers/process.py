"""What every producer process shares: a started publisher, and, with MDP_PRODUCER_METRICS_PORT,
its ``/metrics`` and ``/health``. A live producer passes its feeds: ``/health`` then answers 200
only while every feed is connected and receiving, and ``/metrics`` carries their counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from marketdata.kafka import create_producer, kafka_errors
from marketdata.metrics import MetricsServer
from marketdata.settings import Settings
from marketdata.signals import remaining, signalled, stop_deadline
from producers.feed import FeedMetrics, LiveStats
from producers.publisher import DRAIN_S, Publisher

log = logging.getLogger(__name__)


class PublisherMetrics(Collector):
    """The publisher's own counts, read when scraped: nothing to update on the hot path."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        stage = self.publisher.stage
        records = CounterMetricFamily("mdp_producer_records", "Records published", labels=["stage"])
        records.add_metric([stage], self.publisher.sent_records)
        dead = CounterMetricFamily(
            "mdp_producer_dead_letters", "Payloads sent to the dead-letter topic", labels=["stage"]
        )
        dead.add_metric([stage], self.publisher.dead_letters)
        yield from (records, dead)


@asynccontextmanager
async def publishing(
    settings: Settings, stage: str, *, max_records: int = 100, feeds: Sequence[LiveStats] = ()
) -> AsyncIterator[Publisher]:
    """A publisher on a started Kafka producer, stopped (after its sends) on the way out."""
    producer = create_producer(settings)
    async with kafka_errors():
        await producer.start()
    publisher = Publisher(producer, settings.topics, stage=stage, max_records=max_records,
                          linger_s=settings.producer_flush_ms / 1000)  # fmt: skip
    server = None
    try:
        if settings.producer_metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(PublisherMetrics(publisher))
            registry.register(FeedMetrics(feeds))
            server = MetricsServer(
                registry, lambda: all(feed.healthy() for feed in feeds),
                settings.metrics_host, settings.producer_metrics_port,
            )  # fmt: skip
            await server.start()
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
        yield publisher
    finally:
        if server is not None:
            await server.aclose()
        await publisher.drain()
        await _stop_producer(producer)


async def _stop_producer(producer: AIOKafkaProducer) -> None:
    """Stop the producer; once the process is signalled to stop, give up after the drain's time
    and 0.25 s (aiokafka's stop waits for every batch to be answered, for minutes when the
    broker is away: what is still unanswered was counted by the drain)."""
    stopping = asyncio.ensure_future(producer.stop())
    if stop_deadline(DRAIN_S) is None:
        either: set[asyncio.Future[Any]] = {stopping, asyncio.ensure_future(signalled())}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        for waiter in either - {stopping}:
            waiter.cancel()
    if not stopping.done():
        await asyncio.wait({stopping}, timeout=remaining(stop_deadline(DRAIN_S + 0.25)))
    if stopping.done():
        async with kafka_errors():
            stopping.result()
    else:
        stopping.cancel()
        log.info("the Kafka producer did not stop in time; leaving it")
