"""Rebuilding a partition's dedupe window from what was already emitted.

The output topic is the window's changelog: a tick key is a duplicate exactly when it was
emitted before. When a worker is assigned a raw partition (at start, after a crash, after a
rebalance), it reads the same-numbered partition of ``md.ticks`` back over the window's time
span before processing. Same number, because raw and output topics have the same partition
count and the same key (``exchange:symbol``), so they partition alike (checked at start).
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from marketdata.codec import TickBatch, decode
from marketdata.errors import DecodeError
from marketdata.kafka import kafka_errors
from marketdata.settings import Settings
from marketdata.window import SeenWindow

log = logging.getLogger(__name__)


async def load_window(settings: Settings, partition: int, window: SeenWindow) -> int:
    """Fill ``window`` with the keys emitted to ``md.ticks[partition]`` within its time span;
    return how many keys were read."""
    tp = TopicPartition(settings.topics.ticks, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed",
    )  # fmt: skip
    loaded = 0
    async with kafka_errors():
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            since = int((time.time() - window.max_age_s) * 1000)
            found = (await consumer.offsets_for_times({tp: since}))[tp]
            # Never more messages than the window holds keys (each message holds at least one).
            start = max(found.offset if found else end, end - window.max_keys, 0)
            if start < end:
                consumer.seek(tp, start)
                position = start
                while position < end:
                    fetched = await consumer.getmany(tp, timeout_ms=1000)
                    for message in fetched.get(tp, []):
                        position = message.offset + 1
                        try:
                            batch = decode(message.value)
                        except DecodeError:
                            continue  # not ours to judge here; the sink dead-letters it
                        if isinstance(batch, TickBatch):
                            window.remember(batch.records)
                            loaded += len(batch.records)
                    if not fetched:
                        position = await consumer.position(tp)
        finally:
            await consumer.stop()
    log.info("dedupe window of %s[%d]: %d keys reloaded", tp.topic, partition, loaded)
    return loaded
