"""What every producer process shares: a started publisher, and,
with MDP_PRODUCER_METRICS_PORT, its ``/metrics`` and ``/health``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from marketdata.kafka import create_producer, kafka_errors
from marketdata.metrics import MetricsServer
from marketdata.settings import Settings
from producers.publisher import Publisher

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
    settings: Settings, stage: str, *, max_records: int = 100
) -> AsyncIterator[Publisher]:
    """A publisher on a started Kafka producer, stopped (after its sends) on the way out."""
    producer = create_producer(settings)
    async with kafka_errors():
        await producer.start()
    publisher = Publisher(producer, settings.topics, stage=stage, max_records=max_records)
    server = None
    try:
        if settings.producer_metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(PublisherMetrics(publisher))
            server = MetricsServer(registry, lambda: True, settings.metrics_host,
                                   settings.producer_metrics_port)  # fmt: skip
            await server.start()
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
        yield publisher
    finally:
        if server is not None:
            await server.aclose()
        await producer.stop()
