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
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from marketdata.codec import TickBatch, decode
from marketdata.errors import DecodeError
from marketdata.kafka import kafka_errors
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.window import SeenWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadBack:
    """The ticks read back from a partition of ``md.ticks``, and from which offset."""

    ticks: list[Tick]
    start: int  # the first offset read (the end when nothing was)
    first: int  # the partition's first offset still held


async def read_back(
    settings: Settings, partition: int, span_s: float, *, at_most: int | None = None
) -> ReadBack:
    """The ticks emitted to ``md.ticks[partition]`` in the last ``span_s`` seconds (and in at
    most the last ``at_most`` messages)."""
    tp = TopicPartition(settings.topics.ticks, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed",
    )  # fmt: skip
    ticks: list[Tick] = []
    async with kafka_errors():
        await consumer.start()
        try:
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            since = int((time.time() - span_s) * 1000)
            found = (await consumer.offsets_for_times({tp: since}))[tp]
            start = max(found.offset if found else end, first)
            if at_most is not None:
                start = max(start, end - at_most)
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
                            ticks.extend(batch.records)
                    if not fetched:
                        position = await consumer.position(tp)
        finally:
            await consumer.stop()
    return ReadBack(ticks, start, first)


async def load_window(settings: Settings, partition: int, window: SeenWindow) -> int:
    """Fill ``window`` with the keys emitted to ``md.ticks[partition]`` within its time span;
    return how many keys were read."""
    # Never more messages than the window holds keys (each message holds at least one).
    found = await read_back(settings, partition, window.max_age_s, at_most=window.max_keys)
    window.remember(found.ticks)
    log.info("dedupe window of %s[%d]: %d keys reloaded", settings.topics.ticks, partition,
             len(found.ticks))  # fmt: skip
    return len(found.ticks)
