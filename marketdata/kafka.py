"""Kafka clients built one way for the whole project, and aiokafka's errors translated once.

The producer settings were chosen by ``bench/producer_settings.py`` (see BENCHMARKS.md):
idempotence with ``acks=all`` so that a retried send never duplicates or reorders; zstd, because
aiokafka runs lz4 only as LZ4HC level 9, which measured slower than zstd and compresses less
(7.6x against 10.3x on tick batches); 256 KiB batches; and a 5 ms linger, which doubles the rate
of a producer fed message by message against linger 0 and adds ~5 ms when the market is quiet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from marketdata.errors import MarketDataError, TransientError
from marketdata.settings import Settings

log = logging.getLogger(__name__)

PRODUCER_TUNING: Final[dict[str, Any]] = {
    "acks": "all",
    "enable_idempotence": True,
    "compression_type": "zstd",
    "linger_ms": 5,
    "max_batch_size": 256 * 1024,
    "request_timeout_ms": 30_000,
}


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    return {"bootstrap_servers": settings.kafka_bootstrap, **PRODUCER_TUNING, **overrides}


# How long the broker may hold a fetch request for data to come (aiokafka: 500 ms, faust's
# worker: 1,500). aiokafka keeps one fetch in flight per broker and leaves out of it the
# partitions whose records it still holds, so a request naming only quiet partitions holds
# back the busy ones' next fetch for this long: at 5k ticks/s the processor took nothing for up
# to 1.5 s at a time (issue #20). Quiet topics then cost one empty fetch per this period.
FETCH_MAX_WAIT_MS = 50


def consumer_config(settings: Settings, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    # Offsets are committed by the application after its own work is durable, never on a timer.
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        **overrides,
    }


def create_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (acks=all, zstd); call ``start()`` and ``stop()`` around its use."""
    return AIOKafkaProducer(**producer_config(settings, **overrides))


def create_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits; call ``start()`` and ``stop()`` around its use."""
    return AIOKafkaConsumer(*topics, **consumer_config(settings, group_id, **overrides))


def translate(exc: KafkaError) -> MarketDataError:
    """aiokafka's error as ours, keeping aiokafka's own judgement of whether a retry may help."""
    message = f"kafka: {type(exc).__name__}: {exc}"
    if getattr(exc, "retriable", False) or isinstance(exc, ConnectionError):
        return TransientError(message)
    return MarketDataError(message)


@contextlib.asynccontextmanager
async def kafka_errors() -> AsyncIterator[None]:
    """The one boundary where aiokafka's exceptions become the project's."""
    try:
        yield
    except KafkaError as exc:
        raise translate(exc) from exc


@contextlib.asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    async with kafka_errors():
        await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    settings: Settings, names: Iterable[str], *, partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Faust does not create the topics its agents write to, so every topic is made up front.
    """
    wanted = list(dict.fromkeys(names))
    count = partitions or settings.topic_partitions
    async with admin_client(settings) as admin, kafka_errors():
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name, count, settings.topic_replication) for name in missing]
                )
            except TopicAlreadyExistsError:
                log.debug("topics created concurrently: %s", missing)
    return missing


async def topic_partitions(settings: Settings, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of the topics that exist (asked of the broker: a plain consumer knows only
    the topics it has fetched metadata for)."""
    async with admin_client(settings) as admin, kafka_errors():
        described = await admin.describe_topics(list(topics))
    return sorted(TopicPartition(d["topic"], p["partition"])
                  for d in described if d["error_code"] == 0 for p in d["partitions"])  # fmt: skip
