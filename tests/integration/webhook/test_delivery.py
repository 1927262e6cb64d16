"""What a broker that hangs, rather than fails, does to delivery: the README's claim, shown."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.processors.support import read_ticks
from tests.integration.webhook.test_poison import health, serving
from tests.integration.webhook.test_webhook import alert, post, signed


class HangingKafka(KafkaProxy):
    """Requests reach the broker; while hung, its responses are held back (a broker that
    stalls after writing, a full network buffer, a lost response)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.answering = asyncio.Event()
        self.answering.set()

    async def _responses(self, reader: asyncio.StreamReader) -> AsyncGenerator[bytes]:
        async with contextlib.aclosing(super()._responses(reader)) as frames:
            async for frame in frames:
                await self.answering.wait()
                yield frame


async def test_a_hanging_broker_can_deliver_a_spooled_alert_twice_with_the_same_id(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings, settings.topics.all())
    broker = HangingKafka(settings.kafka_bootstrap)
    await broker.start()
    try:
        async with serving(settings, tmp_path, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
                           MDP_WEBHOOK_AUTH="signature") as url:  # fmt: skip
            first, second = alert(1), alert(2)
            status, text = await post(url, first, signed(first))
            assert (status, json.loads(text)["status"]) == (202, "accepted"), text
            broker.answering.clear()
            status, text = await post(url, second, signed(second))
            # Kafka wrote it but did not say so in time: the webhook spools it, as it must.
            assert (status, json.loads(text)["status"]) == (202, "spooled"), text
            broker.answering.set()
            async with asyncio.timeout(30):
                while await health(url) != (200, "ready: kafka connected\n"):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
    finally:
        await broker.aclose()
    ticks = await read_ticks(settings, settings.topics.ticks_raw, idle_s=2)
    numbers = [t.extras["n"] for t in ticks if t.extras]
    assert numbers == [1, 2, 2]  # at least once: the spooled alert came twice...
    assert ticks[1].key == ticks[2].key  # ...with the same key, so the sink stores it once
