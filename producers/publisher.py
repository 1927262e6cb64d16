"""Publishing normalised records: small per-instrument envelopes, and dead letters.

Every Kafka message costs a downstream stage tens of microseconds (faust ~80 µs), so producers
pack several records of one instrument per message (see BENCHMARKS.md, Processors): records are
buffered per instrument and sent when ``max_records`` are waiting or when ``flush()`` is called,
which the producer does every few milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from marketdata.codec import encode_bars, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE
from marketdata.kafka import kafka_errors
from marketdata.records import Bar, Tick
from marketdata.topics import Topics, instrument_key


class Publisher:
    def __init__(
        self, producer: AIOKafkaProducer, topics: Topics, *, stage: str, max_records: int = 100
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.stage = stage
        self.max_records = max_records
        self._ticks: dict[bytes, list[Tick]] = {}
        self._bars: dict[bytes, list[Bar]] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self.sent_records = 0
        self.dead_letters = 0
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

    async def flush(self, *, wait: bool = False) -> None:
        """Send every buffered envelope; with ``wait``, until the broker acknowledged all."""
        ticks, self._ticks = self._ticks, {}
        bars, self._bars = self._bars, {}
        for key, group in ticks.items():
            await self._send_ticks(key, group)
        for key, bar_group in bars.items():
            await self._send_bars(key, bar_group)
        self.last_flush = time.monotonic()
        if wait and self._pending:
            pending, self._pending = self._pending, []
            async with kafka_errors():
                await asyncio.gather(*pending)

    async def dead(self, raw: bytes, reason: str, origin: str) -> None:
        """A payload that could not be normalised: kept as it came, with the reason."""
        headers = [(HEADER_REASON, reason.encode()), (HEADER_STAGE, self.stage.encode()),
                   ("mdp.origin", origin.encode())]  # fmt: skip
        async with kafka_errors():
            self._pending.append(await self.producer.send(self.topics.dlq, raw, headers=headers))
        self.dead_letters += 1

    async def dead_rows(self, rejected: Iterable[tuple[Any, str]], origin: str) -> None:
        """REST rows that did not normalise, each as the JSON it came as, with its reason."""
        for row, reason in rejected:
            await self.dead(json.dumps(row).encode(), reason, origin)

    async def _send_ticks(self, key: bytes, group: list[Tick]) -> None:
        await self._send(self.topics.ticks_raw, key, encode_ticks(group), len(group))

    async def _send_bars(self, key: bytes, group: list[Bar]) -> None:
        await self._send(self.topics.bars_raw, key, encode_bars(group), len(group))

    async def _send(self, topic: str, key: bytes, value: bytes, count: int) -> None:
        async with kafka_errors():
            self._pending.append(await self.producer.send(topic, value, key=key))
        self.sent_records += count
        if len(self._pending) > 10_000:
            # Acknowledged sends need no tracking, but a failed one must not pass unseen.
            for future in self._pending:
                if future.done() and future.exception() is not None:
                    async with kafka_errors():
                        future.result()
            self._pending = [f for f in self._pending if not f.done()]
