"""Per-partition batching: decode messages as they arrive, say when a batch is due.

Pure bookkeeping, no I/O: the sink feeds it what the consumer fetched and takes a
:class:`Pending` flush out of it when the row count or the age of the oldest row says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition

from marketdata.codec import TickBatch, decode
from marketdata.errors import DecodeError
from marketdata.records import Bar, Tick


@dataclass(slots=True)
class PartitionBatch:
    opened_at: float
    next_offset: int = 0
    ticks: list[Tick] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.ticks) + len(self.bars) + len(self.dead)


@dataclass(slots=True)
class Pending:
    """One flush: the records of several partitions, written in one transaction."""

    parts: dict[TopicPartition, PartitionBatch]

    def ticks(self) -> list[Tick]:
        return [tick for part in self.parts.values() for tick in part.ticks]

    def bars(self) -> list[Bar]:
        return [bar for part in self.parts.values() for bar in part.bars]

    def dead(self) -> list[tuple[ConsumerRecord, str]]:
        return [entry for part in self.parts.values() for entry in part.dead]

    def offsets(self) -> dict[TopicPartition, int]:
        """What to commit once the rows are stored: the offset after each partition's last."""
        return {tp: part.next_offset for tp, part in self.parts.items()}

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts.values())

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.parts.pop(tp, None)


class Accumulator:
    def __init__(
        self, max_rows: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.clock = clock
        self._parts: dict[TopicPartition, PartitionBatch] = {}
        self.rows = 0

    def add(self, tp: TopicPartition, messages: Iterable[ConsumerRecord]) -> None:
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionBatch(opened_at=self.clock())
        before = part.size
        for message in messages:
            try:
                batch = decode(message.value)
            except DecodeError as exc:
                part.dead.append((message, exc.reason))
            else:
                if isinstance(batch, TickBatch):
                    part.ticks.extend(batch.records)
                else:
                    part.bars.extend(batch.records)
            part.next_offset = message.offset + 1
        self.rows += part.size - before

    def seconds_until_due(self) -> float | None:
        """How long until the oldest row must be written; None when nothing is buffered."""
        if not self._parts:
            return None
        oldest = min(part.opened_at for part in self._parts.values())
        return max(0.0, oldest + self.max_age_s - self.clock())

    def due(self) -> bool:
        if self.rows >= self.max_rows:
            return True
        wait = self.seconds_until_due()
        return wait is not None and wait == 0.0

    def take(self) -> Pending:
        pending = Pending(self._parts)
        self._parts = {}
        self.rows = 0
        return pending

    def discard(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget revoked partitions: their next owner re-reads them from the last commit."""
        dropped = 0
        for tp in partitions:
            part = self._parts.pop(tp, None)
            if part is not None:
                dropped += part.size
        self.rows -= dropped
        return dropped
