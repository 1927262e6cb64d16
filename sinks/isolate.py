"""Storing a flush the database rejected: bisect it until the rows it refuses are isolated.

Ticks and bars are bisected separately. Each piece is written in a transaction of its own, so
the good rows are stored in as few transactions as the bisection needs, and each row that fails
alone is kept, with the database's message, to be dead-lettered. A failure worth retrying (see
:mod:`sinks.errors`) stops the bisection where it is, with the piece in hand still to do, so that
the sink's retry with backoff resumes it rather than starting again.

Bars are written left piece first, so that of two versions of a bar in one flush the later one
is still written last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marketdata.codec import encode_bars, encode_ticks
from marketdata.records import Bar, Tick
from sinks.accumulator import Origin, Pending
from sinks.errors import classify
from sinks.writer import WriteResult

Write = Callable[[Sequence[Tick], Sequence[Bar]], Awaitable[WriteResult]]


@dataclass(frozen=True, slots=True)
class Piece:
    """Consecutive records of one kind (ticks or bars, never both) and their origins."""

    ticks: list[Tick]
    bars: list[Bar]
    origins: list[Origin]

    def halves(self) -> tuple[Piece, Piece]:
        mid = len(self.origins) // 2
        return (
            Piece(self.ticks[:mid], self.bars[:mid], self.origins[:mid]),
            Piece(self.ticks[mid:], self.bars[mid:], self.origins[mid:]),
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    record: Tick | Bar
    origin: Origin
    reason: str


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """A dead letter for one record of a message that held several: that record alone, as a
    one-record batch, under the key, headers and origin (topic, partition, offset) of the message
    it came from; the message's other records were stored."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def dead_letter(rejected: Rejected) -> tuple[Any, str]:
    """The message to dead-letter for a rejected record, and the reason to give."""
    origin = rejected.origin
    message = origin.message
    if origin.count == 1:
        return message, rejected.reason
    record = rejected.record
    value = encode_ticks([record]) if isinstance(record, Tick) else encode_bars([record])
    single = DeadRecord(message.topic, message.partition, message.offset, message.key, value,
                        message.headers)  # fmt: skip
    where = f"record {origin.index + 1} of the {origin.count} in the message, re-encoded alone"
    return single, f"{rejected.reason} ({where})"


class Isolation:
    """The pieces of a rejected flush still to store, and the records rejected so far."""

    def __init__(self, pending: Pending) -> None:
        # A stack: the left half of a piece is tried before its right half.
        self._todo = [
            piece
            for piece in (
                Piece([], pending.bars(), pending.bar_origins()),
                Piece(pending.ticks(), [], pending.tick_origins()),
            )
            if piece.origins
        ]
        self.rejected: list[Rejected] = []
        self.writes = 0
        self.ticks_staged = self.ticks_inserted = self.bars_staged = self.bars_written = 0

    @property
    def done(self) -> bool:
        return not self._todo

    @property
    def result(self) -> WriteResult:
        return WriteResult(self.ticks_staged, self.ticks_inserted, self.bars_staged,
                           self.bars_written)  # fmt: skip

    async def run(self, write: Write) -> None:
        """Store every piece left, rejecting single records the database refuses; a failure
        worth retrying propagates, with the piece it met still to do."""
        while self._todo:
            piece = self._todo[-1]
            self.writes += 1
            try:
                result = await write(piece.ticks, piece.bars)
            except Exception as exc:
                failure = classify(exc)
                if failure.retriable:
                    raise
                self._todo.pop()
                if len(piece.origins) == 1:
                    record = piece.ticks[0] if piece.ticks else piece.bars[0]
                    self.rejected.append(Rejected(record, piece.origins[0], failure.reason))
                else:
                    left, right = piece.halves()
                    self._todo += [right, left]
                continue
            self._todo.pop()
            self.ticks_staged += result.ticks_staged
            self.ticks_inserted += result.ticks_inserted
            self.bars_staged += result.bars_staged
            self.bars_written += result.bars_written
