"""Dead letters: a message no stage can use goes to ``md.dlq`` unchanged, with the reason."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaProducer

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
