"""Dead letters: a message no stage can use goes to ``md.dlq`` unchanged, with the reason."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from marketdata.kafka import kafka_errors, topic_partitions
from marketdata.settings import Settings

log = logging.getLogger(__name__)

HEADER_REASON: Final = "mdp.reason"
HEADER_STAGE: Final = "mdp.stage"
HEADER_TOPIC: Final = "mdp.topic"
HEADER_PARTITION: Final = "mdp.partition"
HEADER_OFFSET: Final = "mdp.offset"


class SourceMessage(Protocol):
    """What a dead letter keeps of the message it replaces (an aiokafka ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def dead_letter_headers(message: SourceMessage, reason: str, stage: str) -> list[tuple[str, bytes]]:
    """The message's own headers, then where it came from and why it was rejected."""
    return [
        *[(name, value) for name, value in (message.headers or ())],
        (HEADER_REASON, reason.encode()),
        (HEADER_STAGE, stage.encode()),
        (HEADER_TOPIC, message.topic.encode()),
        (HEADER_PARTITION, str(message.partition).encode()),
        (HEADER_OFFSET, str(message.offset).encode()),
    ]


def log_dead_letter(message: SourceMessage, reason: str) -> None:
    log.warning(
        "dead letter %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
    )


class DeadLetters:
    """Sends rejected messages to the dead-letter topic; the caller awaits delivery before it
    commits the offset past them, so a dead letter is never lost."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, stage: str) -> None:
        self.producer = producer
        self.topic = topic
        self.stage = stage

    async def send(self, message: SourceMessage, reason: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send(
            self.topic,
            message.value,
            key=message.key,
            headers=dead_letter_headers(message, reason, self.stage),
        )
        return future


# Inspecting and replaying (`mdp dlq`) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    offset: int  # in md.dlq (partition 0 … n: ``partition:offset`` when several)
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for n, v in self.headers if n == name), "")

    @property
    def origin_topic(self) -> str:
        """The topic it was taken from; empty for a producer's (a venue payload, not a message)."""
        return self.header(HEADER_TOPIC)


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Everything in the dead-letter topic now, oldest first per partition."""
    topic = settings.topics.dlq
    partitions = await topic_partitions(settings, [topic])
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)  # fmt: skip
    async with kafka_errors():
        await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            letters += [DeadLetter(m.offset, m.partition, m.key, m.value or b"", list(m.headers))
                        for records in batches.values() for m in records
                        if m.offset < ends[TopicPartition(topic, m.partition)]]  # fmt: skip
        return letters
    finally:
        await consumer.stop()


async def replay(
    producer: AIOKafkaProducer, letters: list[DeadLetter]
) -> tuple[int, list[DeadLetter]]:
    """Send each dead letter that came from a topic back to it, with its own key and headers
    (not ours), e.g. after the fix for what rejected it; return how many went, and the others
    (a producer's dead letters are venue payloads: fetch those again with `mdp backfill`)."""
    sent, skipped, pending = 0, [], []
    for letter in letters:
        if not letter.origin_topic:
            skipped.append(letter)
            continue
        own = [(n, v) for n, v in letter.headers if not n.startswith("mdp.")]
        async with kafka_errors():
            pending.append(await producer.send(letter.origin_topic, letter.value,
                                               key=letter.key, headers=own))  # fmt: skip
        sent += 1
    async with kafka_errors():
        await asyncio.gather(*pending)
    return sent, skipped
