"""Publishing normalised records: small per-instrument envelopes, and dead letters.

Every Kafka message costs a downstream stage tens of microseconds (faust ~80 µs), so producers
pack several records of one instrument per message (see BENCHMARKS.md, Processors): records are
buffered per instrument and sent when ``max_records`` are waiting or when ``flush()`` is called,
which the producer does every few milliseconds.

Stopping is bounded: once the process is signalled to stop, sends and the wait for the broker's
acknowledgements give up :data:`DRAIN_S` seconds later, and :meth:`Publisher.drain` says in one
line how many records were not delivered (a broker that is away does not hold the process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from marketdata.codec import encode_bars, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE
from marketdata.kafka import kafka_errors, translate
from marketdata.records import Bar, Tick
from marketdata.signals import remaining, signalled, stop_deadline
from marketdata.topics import Topics, instrument_key

log = logging.getLogger(__name__)

# After a stop signal: what the venue loop and the drain may still spend on delivery, inside the
# 2 s a producer has to exit (the rest is for stopping the Kafka client and the interpreter).
DRAIN_S = 1.0

_Pending = tuple["asyncio.Future[Any]", int]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One Kafka value encoded elsewhere (the dump import builds them a column at a time):
    ``count`` records of the instrument ``key``, for the raw ticks or bars topic."""

    topic: Literal["ticks", "bars"]
    key: bytes
    value: bytes
    count: int  # a send's future, and how many records it carries


class Publisher:
    def __init__(
        self, producer: AIOKafkaProducer, topics: Topics, *, stage: str, max_records: int = 100,
        drain_s: float = DRAIN_S,
    ) -> None:  # fmt: skip
        self.producer = producer
        self.drain_s = drain_s
        self.topics = topics
        self.stage = stage
        self.max_records = max_records
        self._ticks: dict[bytes, list[Tick]] = {}
        self._bars: dict[bytes, list[Bar]] = {}
        self._pending: list[_Pending] = []
        self.sent_records = 0
        self.dead_letters = 0
        # Records that never reached the broker: given up at a stop, or refused by it.
        self.undelivered = 0
        self._refused = 0  # of those, sent (so in sent_records) and then refused by the broker
        self.last_flush = time.monotonic()

    async def add(self, records: Iterable[Tick | Bar]) -> None:
        for record in records:
            key = instrument_key(record.exchange, record.symbol)
            if isinstance(record, Tick):
                group = self._ticks.setdefault(key, [])
                group.append(record)
                if len(group) >= self.max_records:
                    await self._send_ticks(key, self._ticks.pop(key))
            else:
                bars = self._bars.setdefault(key, [])
                bars.append(record)
                if len(bars) >= self.max_records:
                    await self._send_bars(key, self._bars.pop(key))

    async def add_encoded(self, envelope: Envelope) -> None:
        """Send an envelope as it is, after what is buffered for its instrument (so that the
        instrument's records keep their order); its records count as sent like any others."""
        key = envelope.key
        if envelope.topic == "ticks":
            if key in self._ticks:
                await self._send_ticks(key, self._ticks.pop(key))
            topic = self.topics.ticks_raw
        else:
            if key in self._bars:
                await self._send_bars(key, self._bars.pop(key))
            topic = self.topics.bars_raw
        if await self._send(topic, key, envelope.value, envelope.count):
            self.sent_records += envelope.count

    async def flush(self, *, wait: bool = False) -> None:
        """Send every buffered envelope; with ``wait``, until the broker acknowledged all (or,
        once the process is stopping, until ``drain_s`` after the signal)."""
        await self._send_buffered()
        if wait and self._pending:
            await self._acknowledged()
            if stop_deadline(self.drain_s) is None:
                self._raise_failures()

    async def drain(self) -> int:
        """The end of publishing: send what is buffered, wait for the acknowledgements as
        :meth:`flush` does, and log one line; return how many records were not delivered."""
        await self._send_buffered()
        if self._pending:
            await self._acknowledged()
        unanswered = sum(n for future, n in self._pending if not _delivered(future))
        lost = self.undelivered + unanswered
        lost += sum(map(len, self._ticks.values())) + sum(map(len, self._bars.values()))
        # What was handed to the producer and not refused or left unanswered reached the broker.
        delivered = self.sent_records + self.dead_letters - unanswered - self._refused
        if lost:
            log.warning("%s: %d records could not be delivered to Kafka (%d delivered)",
                        self.stage, lost, delivered)  # fmt: skip
        else:
            log.info("%s: 0 records could not be delivered to Kafka (%d delivered)",
                     self.stage, delivered)  # fmt: skip
        return lost

    async def dead(self, raw: bytes, reason: str, origin: str) -> None:
        """A payload that could not be normalised: kept as it came, with the reason."""
        headers = [(HEADER_REASON, reason.encode()), (HEADER_STAGE, self.stage.encode()),
                   ("mdp.origin", origin.encode())]  # fmt: skip
        if await self._send(self.topics.dlq, None, raw, 1, headers):
            self.dead_letters += 1

    async def dead_rows(self, rejected: Iterable[tuple[Any, str]], origin: str) -> None:
        """REST rows that did not normalise, each as the JSON it came as, with its reason."""
        for row, reason in rejected:
            await self.dead(json.dumps(row).encode(), reason, origin)

    async def _send_buffered(self) -> None:
        ticks, self._ticks = self._ticks, {}
        bars, self._bars = self._bars, {}
        try:
            for key in list(ticks):
                await self._send_ticks(key, ticks.pop(key))
            for key in list(bars):
                await self._send_bars(key, bars.pop(key))
        except asyncio.CancelledError:
            # Cancelled at a stop: what was not handed to the producer is counted, not lost
            # without a word (the group being sent counted itself).
            self.undelivered += sum(map(len, ticks.values())) + sum(map(len, bars.values()))
            raise
        self.last_flush = time.monotonic()

    async def _send_ticks(self, key: bytes, group: list[Tick]) -> None:
        if await self._send(self.topics.ticks_raw, key, encode_ticks(group), len(group)):
            self.sent_records += len(group)

    async def _send_bars(self, key: bytes, group: list[Bar]) -> None:
        if await self._send(self.topics.bars_raw, key, encode_bars(group), len(group)):
            self.sent_records += len(group)

    async def _send(
        self, topic: str, key: bytes | None, value: bytes, count: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> bool:  # fmt: skip
        """Hand one message to the producer; False when it was given up (stopping)."""
        send = self.producer.send(topic, value, key=key, headers=headers)
        deadline = stop_deadline(self.drain_s)
        try:
            async with kafka_errors():
                if deadline is None:
                    future = await send
                else:
                    # A broker that is away blocks a send (metadata, a full buffer) for minutes.
                    future = await asyncio.wait_for(send, remaining(deadline))
        except (TimeoutError, asyncio.CancelledError) as exc:
            self.undelivered += count
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        self._pending.append((future, count))
        if len(self._pending) > 10_000:
            # Acknowledged sends need no tracking, but a failed one must not pass unseen.
            self._raise_failures()
        return True

    async def _acknowledged(self) -> None:
        """Wait until every pending send is answered, or ``drain_s`` after a stop signal."""
        # Never cancelled: that would cancel the sends themselves.
        answered = asyncio.gather(*(future for future, _ in self._pending), return_exceptions=True)
        if stop_deadline(self.drain_s) is None:
            stopping = asyncio.ensure_future(signalled())
            either: set[asyncio.Future[Any]] = {answered, stopping}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
        if not answered.done():
            await asyncio.wait({answered}, timeout=remaining(stop_deadline(self.drain_s)))

    def _raise_failures(self) -> None:
        """Forget the acknowledged sends; raise the first failed one's error."""
        failed = [(future, n) for future, n in self._pending
                  if future.done() and not _delivered(future)]  # fmt: skip
        self._pending = [(future, n) for future, n in self._pending if not future.done()]
        if failed:
            self.undelivered += sum(n for _, n in failed)
            self._refused += sum(n for _, n in failed)
            error = failed[0][0].exception()
            if isinstance(error, KafkaError):
                raise translate(error) from error
            raise error or RuntimeError("a send failed without an error")


def _delivered(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
