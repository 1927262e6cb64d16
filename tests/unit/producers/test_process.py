from __future__ import annotations

from typing import Any, cast

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from marketdata.topics import Topics
from producers.process import PublisherMetrics
from producers.publisher import Publisher


def test_the_publishers_counts_are_read_when_scraped() -> None:
    publisher = Publisher(cast(AIOKafkaProducer, cast(Any, None)), Topics(""), stage="ibkr.live")
    registry = CollectorRegistry()
    registry.register(PublisherMetrics(publisher))
    labels = {"stage": "ibkr.live"}
    assert registry.get_sample_value("mdp_producer_records_total", labels) == 0
    publisher.sent_records, publisher.dead_letters = 1234, 5
    assert registry.get_sample_value("mdp_producer_records_total", labels) == 1234
    assert registry.get_sample_value("mdp_producer_dead_letters_total", labels) == 5
