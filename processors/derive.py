"""Derived bars in the processor: trades in, bars out to ``md.bars.raw`` (see processors/bars.py).

The ticks the batch processor decodes are tapped through its ``decode`` hook, so bars cost no
second decode. Each buffer's changed bars are emitted once with its other outputs (at most one
version of a bar per buffer, however many trades it took), and acked with them.

Restart: the bars of a raw partition are rebuilt from the same-numbered partition of
``md.ticks``, the trades already emitted, before its first buffer is processed; a bar adds a
trade once only, so the replay of uncommitted input that follows counts nothing twice. The
output topic rather than a faust table's changelog: a table writes one changelog record per
update (``Table.on_key_set`` sends one for every ``table[key] = ...``), i.e. per trade and
interval, whereas ``md.ticks`` is written anyway. After the rebuild every rebuilt bar is
emitted again, which also covers versions a crash kept from being sent. When the read did not
start at the partition's first offset, an instrument's first bar read back may lack trades
emitted before the read: it is frozen (trades for it count as too late) rather than emitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import faust
from prometheus_client import CollectorRegistry, Counter

from marketdata.codec import Batch, TickBatch, decode, encode_bars
from marketdata.dlq import SourceMessage
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from processors.bars import (
    Added,
    BarBuilder,
    interval_seconds,
    micros,
    parse_intervals,
    parse_sources,
)
from processors.core import BatchProcessor, Output, Result
from processors.rebuild import read_back

log = logging.getLogger(__name__)


class BarMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.trades = Counter("mdp_bars_trades", "Trades added to derived bars", registry=registry)
        self.late = Counter(
            "mdp_bars_late_trades",
            "Trades later than a derived bar's end plus the lateness: the bar is revised",
            registry=registry,
        )
        self.too_late = Counter(
            "mdp_bars_too_late_trades",
            "Trades for a derived bar no longer held: no bar of that interval is made of them",
            registry=registry,
        )
        self.emitted = Counter(
            "mdp_bars_emitted", "Derived bar versions emitted", ["closed"], registry=registry
        )
        self.idle_closed = Counter(
            "mdp_bars_idle_closed", "Derived bars closed by the idle timeout", registry=registry
        )
        self.rebuilt = Counter(
            "mdp_bars_rebuilt_trades", "Trades read back from md.ticks to rebuild bars",
            registry=registry,
        )  # fmt: skip
        self.invalid = Counter(
            "mdp_bars_invalid", "Derived bars no record can hold (logged)", registry=registry
        )
        self.ignored = Counter(
            "mdp_bars_ignored_trades",
            "Trades of a source MDP_BARS_TRADE_SOURCES does not name: in no derived bar",
            registry=registry,
        )


class DerivedBars:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings
        intervals = parse_intervals(settings.bars_intervals)
        self.builder = BarBuilder(
            intervals, lateness_s=settings.bars_lateness_ms / 1000,
            retain_s=settings.bars_revise_s, idle_close_s=settings.bars_idle_close_s,
            trade_sources=parse_sources(settings.bars_trade_sources),
        )  # fmt: skip
        # How much of md.ticks a rebuild reads back: every bar still held, open or closed.
        self.rebuild_s = (
            max(interval_seconds(name) for name in intervals) + settings.bars_lateness_ms / 1000
            + settings.bars_revise_s + settings.bars_idle_close_s
        )  # fmt: skip
        self.metrics = BarMetrics(registry)
        self.loaded: set[int] = set()
        self.partition_of: dict[bytes, int] = {}
        self._tapped: list[list[Tick]] = []
        self._ignored_sources: set[str] = set()

    async def process(self, processor: BatchProcessor, messages: Sequence[SourceMessage]) -> Result:
        """``processor.process(messages)``, the bars its trades changed among its outputs."""
        await self.prepare(messages)
        result = processor.process(messages)
        result.outputs.extend(self.after(messages))
        return result

    def install_timer(
        self, app: faust.App, outputs: dict[str, faust.TopicT],
        on_failure: Callable[[BaseException], None],
    ) -> None:  # fmt: skip
        """The wall-clock timer closing the ended bars of quiet instruments."""

        async def close_quiet_bars() -> None:
            # A bar version that fails to reach the broker here is re-emitted by the successor
            # worker (it rebuilds and emits every bar), so the worker exits as for a buffer.
            try:
                sent = [await outputs[o.topic].send(key=o.key, value=o.value) for o in self.idle()]
                await asyncio.gather(*sent)
            except Exception as exc:
                on_failure(exc)

        app.timer(min(1.0, self.settings.bars_idle_close_s / 2))(close_quiet_bars)

    def decode(self, data: bytes | None) -> Batch:
        """The batch processor's decode, keeping the ticks for :meth:`after`."""
        batch = decode(data)
        if isinstance(batch, TickBatch):
            self._tapped.append(batch.records)
        return batch

    async def prepare(self, messages: Sequence[SourceMessage]) -> None:
        """Rebuild the bars of raw tick partitions seen for the first time."""
        topic = self.settings.topics.ticks_raw
        for partition in sorted({m.partition for m in messages if m.topic == topic}):
            if partition not in self.loaded:
                await self._rebuild(partition)
                self.loaded.add(partition)

    def after(self, messages: Sequence[SourceMessage]) -> list[Output]:
        """Add the ticks the batch processor just decoded; the bars they changed, as outputs.
        Called right after ``BatchProcessor.process``, with no ``await`` in between."""
        topic = self.settings.topics.ticks_raw
        for message in messages:
            if message.topic == topic and message.key is not None:
                self.partition_of[message.key] = message.partition
        tapped, self._tapped = self._tapped, []
        added = self.builder.add((t for ticks in tapped for t in ticks), time.monotonic())
        self.metrics.trades.inc(added.trades)
        self.metrics.late.inc(added.late)
        self.metrics.too_late.inc(added.too_late)
        self._ignoring(added)
        return self.flush()

    def _ignoring(self, added: Added) -> None:
        self.metrics.ignored.inc(added.ignored)
        # Once per source and process: a venue whose bars are missing says why in the log.
        for source in sorted(added.ignored_sources - self._ignored_sources):
            log.info("trades of source %s make no derived bars (not in MDP_BARS_TRADE_SOURCES: %s)",
                     source, self.settings.bars_trade_sources)  # fmt: skip
        self._ignored_sources |= added.ignored_sources

    def idle(self) -> list[Output]:
        """Close the ended bars of quiet instruments (the wall-clock timer)."""
        closed = self.builder.close_idle(time.monotonic(), micros_now())
        self.metrics.idle_closed.inc(closed)
        return self.flush() if closed else []

    def flush(self) -> list[Output]:
        bars, invalid = self.builder.flush()
        for key, reason in invalid:
            log.error("derived bar of %s not emitted: %s", key.decode(errors="replace"), reason)
        self.metrics.invalid.inc(len(invalid))
        outputs = []
        size = self.settings.process_batch_records
        for key, group in bars.items():
            closed = sum(bar.closed for bar in group)
            self.metrics.emitted.labels("true").inc(closed)
            self.metrics.emitted.labels("false").inc(len(group) - closed)
            for start in range(0, len(group), size):
                value = encode_bars(group[start : start + size])
                outputs.append(Output(self.settings.topics.bars_raw, key, value))
        return outputs

    def forget(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.loaded -= gone
        keys = [key for key, partition in self.partition_of.items() if partition in gone]
        self.builder.forget(keys)
        for key in keys:
            del self.partition_of[key]

    async def _rebuild(self, partition: int) -> None:
        ticks, truncated = await read_emitted(self.settings, partition, self.rebuild_s)
        added = self.builder.add(ticks, time.monotonic())
        first: dict[bytes, Tick] = {}
        for tick in ticks:
            key = instrument_key(tick.exchange, tick.symbol)
            first.setdefault(key, tick)
            self.partition_of[key] = partition
        if truncated:
            for key, tick in first.items():
                self.builder.freeze_before(key, micros(tick.timestamp))
        self.builder.mark_all(first)
        self.metrics.rebuilt.inc(added.trades)
        log.info("derived bars of %s[%d]: rebuilt from %d trades of %d instruments%s",
                 self.settings.topics.ticks, partition, added.trades, len(first),
                 " (first bars read back frozen)" if truncated else "")  # fmt: skip


class NoBars:
    """Bars off: the batch processor alone."""

    decode = staticmethod(decode)

    async def process(self, processor: BatchProcessor, messages: Sequence[SourceMessage]) -> Result:
        return processor.process(messages)

    def install_timer(
        self, app: faust.App, outputs: dict[str, faust.TopicT],
        on_failure: Callable[[BaseException], None],
    ) -> None:  # fmt: skip
        pass

    def forget(self, partitions: Iterable[int]) -> None:
        pass


def derived_bars(settings: Settings, registry: CollectorRegistry) -> DerivedBars | NoBars:
    return DerivedBars(settings, registry) if settings.bars_enabled else NoBars()


def micros_now() -> int:
    return time.time_ns() // 1000


async def read_emitted(
    settings: Settings, partition: int, span_s: float
) -> tuple[list[Tick], bool]:
    """The ticks emitted to ``md.ticks[partition]`` in the last ``span_s`` seconds, and whether
    older messages exist (so that some bar's earlier trades may be missing)."""
    found = await read_back(settings, partition, span_s)
    return found.ticks, found.start > found.first
