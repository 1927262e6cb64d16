from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.kafka_proxy import KafkaProxy


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[KafkaProxy]:
    """The real broker behind a cuttable proxy, this test's topics made before: a role pointed at
    :attr:`KafkaProxy.bootstrap` loses its broker on :meth:`KafkaProxy.cut`."""
    await ensure_topics(settings, settings.topics.all())
    kafka = KafkaProxy(settings.kafka_bootstrap)
    await kafka.start()
    yield kafka
    await kafka.aclose()
