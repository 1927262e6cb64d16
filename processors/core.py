"""What a processor does to a handful of raw messages, without I/O: decode, drop duplicate ticks,
keep the latest version of each bar, and re-pack the survivors into per-instrument batches.

The faust agent and the plain-aiokafka baseline of ``bench/processor.py`` both call this, so the
benchmark compares the frameworks and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from marketdata.codec import Batch, TickBatch, decode, encode_bars, encode_ticks
from marketdata.dedupe import latest_bars
from marketdata.dlq import SourceMessage
from marketdata.errors import DecodeError
from marketdata.records import Bar, Tick
from marketdata.topics import Topics, instrument_key
from marketdata.window import SeenWindow


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes
    value: bytes


@dataclass(slots=True)
class Result:
    outputs: list[Output] = field(default_factory=list)
    dead: list[tuple[SourceMessage, str]] = field(default_factory=list)
    records_in: int = 0
    ticks_out: int = 0
    bars_out: int = 0
    duplicates: int = 0


class BatchProcessor:
    def __init__(
        self, topics: Topics, *, max_records: int, window_keys: int, window_s: float,
        decode: Callable[[bytes | None], Batch] = decode,
    ) -> None:  # fmt: skip
        self.topics = topics
        self.decode = decode
        self.max_records = max_records
        self.window_keys = window_keys
        self.window_s = window_s
        self.windows: dict[int, SeenWindow] = {}

    def window(self, partition: int) -> SeenWindow:
        """The seen-keys window of one input partition (created empty when missing)."""
        window = self.windows.get(partition)
        if window is None:
            window = self.windows[partition] = SeenWindow(self.window_keys, self.window_s)
        return window

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.windows.pop(partition, None)

    def process(self, messages: Sequence[SourceMessage]) -> Result:
        result = Result()
        ticks: dict[tuple[str, str], list[Tick]] = {}
        bars: dict[tuple[str, str], list[Bar]] = {}
        for message in messages:
            # One message's failure, of whatever kind, is that message's dead letter: raised
            # out of here, it would end the agent with the whole buffer in hand (see app.py).
            try:
                batch = self.decode(message.value)
            except DecodeError as exc:
                result.dead.append((message, exc.reason))
                continue
            except Exception as exc:
                result.dead.append((message, _unexpected(exc)))
                continue
            result.records_in += len(batch.records)
            if isinstance(batch, TickBatch):
                fresh = self.window(message.partition).admit(batch.records)
                result.duplicates += len(batch.records) - len(fresh)
                _group(ticks, fresh)
            else:
                _group(bars, batch.records)
        for (exchange, symbol), group in ticks.items():
            key = instrument_key(exchange, symbol)
            result.ticks_out += len(group)
            for chunk in _chunks(group, self.max_records):
                result.outputs.append(Output(self.topics.ticks, key, encode_ticks(chunk)))
        for (exchange, symbol), versions in bars.items():
            key = instrument_key(exchange, symbol)
            kept = latest_bars(versions)
            result.duplicates += len(versions) - len(kept)
            result.bars_out += len(kept)
            for bar_chunk in _chunks(kept, self.max_records):
                result.outputs.append(Output(self.topics.bars, key, encode_bars(bar_chunk)))
        return result


T = TypeVar("T")
_REASON_CHARS = 500


def _unexpected(exc: Exception) -> str:
    reason = f"could not process: {type(exc).__name__}: {exc}"
    return reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS] + "…"


R = TypeVar("R", Tick, Bar)


def _group(groups: dict[tuple[str, str], list[R]], records: list[R]) -> None:
    """Add ``records`` to their instruments' groups, in arrival order."""
    if not records:
        return
    exchange, symbol = records[0].exchange, records[0].symbol
    # A message normally holds one instrument's records (producers key and batch by instrument):
    # then the whole list joins its group at once, without a dict lookup per record.
    if all(r.symbol == symbol and r.exchange == exchange for r in records):
        groups.setdefault((exchange, symbol), []).extend(records)
        return
    for record in records:
        groups.setdefault((record.exchange, record.symbol), []).append(record)


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    if len(items) <= size:
        yield items  # the usual case: no copy
        return
    for start in range(0, len(items), size):
        yield items[start : start + size]
