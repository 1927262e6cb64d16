"""Per-partition batching: decode messages as they arrive, say when a batch is due.

Pure bookkeeping, no I/O: the sink feeds it what the consumer fetched and takes a
:class:`Pending` flush out of it when :meth:`Accumulator.due` says so. Batching is adaptive: a
batch is due as soon as the input has run dry (the consumer holds nothing more fetched), so a
lone message is written at once; it grows only while the input keeps coming, which happens
under load, when messages pile up while the previous batch is being written. The row count
(the size cap) and the age of the oldest row (the time cap) bound it when the input never
runs dry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import ConsumerRecord, TopicPartition

from marketdata.codec import TickBatch, decode
from marketdata.errors import DecodeError
from marketdata.records import Bar, Tick
from sinks.errors import describe


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: its message, and its place among the message's records."""

    message: ConsumerRecord
    index: int
    count: int


@dataclass(slots=True)
class PartitionBatch:
    opened_at: float
    next_offset: int = 0
    ticks: list[Tick] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord, str]] = field(default_factory=list)
    # (message, how many records it held), in the order of ``ticks`` and ``bars``: one entry a
    # message rather than one a record, since the origin of a record is asked for only when the
    # database rejects it.
    tick_messages: list[tuple[ConsumerRecord, int]] = field(default_factory=list)
    bar_messages: list[tuple[ConsumerRecord, int]] = field(default_factory=list)

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

    def tick_origins(self) -> list[Origin]:
        """The origin of each of :meth:`ticks`, in the same order."""
        return _origins(part.tick_messages for part in self.parts.values())

    def bar_origins(self) -> list[Origin]:
        """The origin of each of :meth:`bars`, in the same order."""
        return _origins(part.bar_messages for part in self.parts.values())

    def offsets(self) -> dict[TopicPartition, int]:
        """What to commit once the rows are stored: the offset after each partition's last."""
        return {tp: part.next_offset for tp, part in self.parts.items()}

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts.values())

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.parts.pop(tp, None)


def _origins(spans: Iterable[list[tuple[ConsumerRecord, int]]]) -> list[Origin]:
    return [
        Origin(message, index, count)
        for part in spans
        for message, count in part
        for index in range(count)
    ]


# Why a batch was due: the input ran dry, the size cap, the time cap.
Reason = Literal["dry", "size", "age"]


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
            except Exception as exc:
                # decode() is meant to be total; should it still fail, that one message is a
                # dead letter rather than the end of the process (and of every message after it).
                part.dead.append((message, f"decoder failed: {describe(exc)}"))
            else:
                if isinstance(batch, TickBatch):
                    part.ticks.extend(batch.records)
                    part.tick_messages.append((message, len(batch.records)))
                else:
                    part.bars.extend(batch.records)
                    part.bar_messages.append((message, len(batch.records)))
            part.next_offset = message.offset + 1
        self.rows += part.size - before

    def seconds_until_due(self) -> float | None:
        """How long until the oldest row must be written; None when nothing is buffered."""
        if not self._parts:
            return None
        oldest = min(part.opened_at for part in self._parts.values())
        return max(0.0, oldest + self.max_age_s - self.clock())

    @property
    def empty(self) -> bool:
        return not self._parts

    @property
    def room(self) -> int:
        """Rows the batch can still take before its size cap."""
        return max(0, self.max_rows - self.rows)

    def due(self, *, dry: bool) -> Reason | None:
        """Why what is buffered must be written now, or None to keep gathering: ``dry`` says
        the consumer holds nothing more fetched, so waiting would only add latency."""
        if self.empty:
            return None
        if self.rows >= self.max_rows:
            return "size"
        if dry:
            return "dry"
        return "age" if self.seconds_until_due() == 0.0 else None

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
