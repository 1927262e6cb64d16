"""Bars from trades, without I/O: per instrument and interval, OHLCV, trade count and VWAP.

Event time decides everything but the idle close. Each instrument has a watermark, the latest
trade time it has seen; a bar ``[start, end)`` closes once the watermark reaches
``end + lateness``. A trade for a bar already closed revises it (a new closed version; the sink
keeps the latest) and is counted as late. Closed bars stay in memory for ``retain`` more
seconds of event time, so that late trades can still revise them; a trade older than that is
counted as too late and makes no bar (it is still stored as a tick).

A trade's bar of the longest interval remembers its fingerprint, so adding a trade twice
changes nothing: a restart rebuilds the bars from ``md.ticks`` and then replays its uncommitted
input, whose trades were partly emitted already, without counting any twice. Open and close are
the prices of the first and last trade in an order that does not depend on arrival (time, then
trade id, then source), so that the same trades give the same bar whatever order they came in.

Quotes (side ``bid``/``ask``) never count, nor do trades of a source outside the builder's
``sources`` (``MDP_BARS_TRADE_SOURCES``): one venue may send one trade under two sources (Binance's
``trade`` and ``aggTrade`` streams, Sierra Chart's trade updates and last-trade snapshots), and a
bar fed by both would count it twice.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

from marketdata.errors import InvalidRecord
from marketdata.records import MAX_SCALE, Bar, Tick
from marketdata.topics import instrument_key
from marketdata.window import fingerprint

DERIVED_SOURCE: Final = "derived.trades"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_QUOTES: Final = frozenset(("bid", "ask"))
# Sums of at most 38-digit decimals (and their products) stay exact at this precision, so a
# bar's volume and notional do not depend on the order its trades were added in.
_EXACT: Final = decimal.Context(prec=200, Emax=999_999, Emin=-999_999)
# VWAP is a quotient: rounded to what a record's decimal holds.
_VWAP: Final = decimal.Context(prec=28)
_FINEST: Final = Decimal(1).scaleb(-MAX_SCALE)

OrderKey = tuple[int, int, str, str]


def interval_seconds(interval: str) -> int:
    """``1s``, ``5s``, ``1m``, ``15m``, ``1h``, ``1d`` in seconds (weeks and months have no fixed
    length or alignment, so no derived bars of them)."""
    count, unit = interval[:-1], interval[-1:]
    if unit not in _UNITS or not count.isdigit() or count.startswith("0") or len(count) > 6:
        raise ValueError(f"an interval looks like 1s, 5s, 1m, 1h or 1d, got {interval!r}")
    return int(count) * _UNITS[unit]


def parse_intervals(text: str) -> tuple[str, ...]:
    """A comma-separated list of intervals, checked, each once, in the order given."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one interval is needed")
    for name in names:
        interval_seconds(name)
    return tuple(dict.fromkeys(names))


EVERY_SOURCE: Final = "*"


def parse_sources(text: str) -> frozenset[str] | None:
    """The trade sources ``MDP_BARS_TRADE_SOURCES`` names; None for ``*`` (every source)."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("at least one trade source (or *) is needed")
    if EVERY_SOURCE in names:
        if len(names) > 1:
            raise ValueError("* (every source) stands alone")
        return None
    return names


def micros(when: datetime) -> int:
    return (when - _EPOCH) // _US


def order_key(tick: Tick, at_us: int) -> OrderKey:
    """Trades of one microsecond ordered by trade id (numeric ids by value, as shorter ones are
    smaller), then source: arrival order plays no part."""
    return (at_us, len(tick.trade_id), tick.trade_id, tick.source)


@dataclass(slots=True, eq=False)
class BarState:
    start_us: int
    end_us: int
    first: OrderKey
    open: Decimal
    last: OrderKey
    close: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    notional: Decimal
    count: int
    seen: set[int] = field(default_factory=set)  # fingerprints: on bars of the longest interval
    closed: bool = False

    @property
    def vwap(self) -> Decimal | None:
        """Volume-weighted average price; None for a bar of zero volume."""
        if not self.volume:
            return None
        vwap = _VWAP.divide(self.notional, self.volume)
        if vwap.as_tuple().exponent < -MAX_SCALE:  # type: ignore[operator]
            vwap = vwap.quantize(_FINEST, context=_EXACT)
        # Rounding can step past a price of many digits: the average stays within the range.
        return min(max(vwap, self.low), self.high)


BarId = tuple[str, int]  # interval, start (µs)


@dataclass(slots=True, eq=False)
class Instrument:
    key: bytes
    exchange: str
    symbol: str
    watermark_us: int = -(2**62)
    last_arrival: float = 0.0
    # Every bar held, in the order they were made (so, mostly, oldest first), and the open ones.
    bars: dict[BarId, BarState] = field(default_factory=dict)
    open: dict[BarId, BarState] = field(default_factory=dict)
    # Per interval: bars opening before this were forgotten (or are incomplete after a
    # rebuild), so a trade for one of them is too late rather than the start of a wrong bar.
    floor_us: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Added:
    """What one call of :meth:`BarBuilder.add` saw."""

    trades: int = 0
    late: int = 0  # trades past some bar's end plus the lateness: that bar is revised
    too_late: int = 0  # trades for some bar no longer held (no bar of that interval made)
    duplicates: int = 0  # trades already added
    ignored: int = 0  # trades of a source that does not count
    ignored_sources: set[str] = field(default_factory=set)


class BarBuilder:
    """Bars of every instrument. Work per round is proportional to what changed: open bars,
    changed bars and instruments with trades are tracked apart from the bars held for revision
    (600 one-second bars an instrument with the default retention)."""

    def __init__(
        self, intervals: Sequence[str], *, lateness_s: float, retain_s: float,
        idle_close_s: float, source: str = DERIVED_SOURCE,
        trade_sources: frozenset[str] | None = None,
    ) -> None:  # fmt: skip
        self.intervals = tuple((name, interval_seconds(name) * 1_000_000) for name in intervals)
        self.lengths = dict(self.intervals)
        self.longest = max(self.intervals, key=lambda interval: interval[1])
        self.lateness_us = round(lateness_s * 1_000_000)
        self.retain_us = round(retain_s * 1_000_000)
        self.idle_close_s = idle_close_s
        self.source = source
        self.trade_sources = trade_sources  # None: every source counts
        self.instruments: dict[bytes, Instrument] = {}
        self._changed: dict[tuple[bytes, str, int], tuple[Instrument, str, BarState]] = {}
        self._traded: dict[bytes, Instrument] = {}  # instruments with trades since the flush

    def add(self, ticks: Iterable[Tick], now: float) -> Added:
        """Add trades (quotes and trades of other sources are skipped) arriving at monotonic
        time ``now``."""
        added = Added()
        touched: dict[bytes, Instrument] = {}
        with decimal.localcontext(_EXACT):
            for tick in ticks:
                if tick.side in _QUOTES:
                    continue
                if self.trade_sources is not None and tick.source not in self.trade_sources:
                    added.ignored += 1
                    added.ignored_sources.add(tick.source)
                    continue
                added.trades += 1
                key = instrument_key(tick.exchange, tick.symbol)
                instrument = self.instruments.get(key)
                if instrument is None:
                    instrument = self.instruments[key] = Instrument(key, tick.exchange, tick.symbol)
                instrument.last_arrival = now
                touched[key] = instrument
                self._add(instrument, tick, added)
        for instrument in touched.values():
            self._close_open(instrument, instrument.watermark_us - self.lateness_us)
        self._traded.update(touched)
        return added

    def _changes(self, instrument: Instrument, name: str, bar: BarState) -> None:
        self._changed[(instrument.key, name, bar.start_us)] = (instrument, name, bar)

    def _add(self, instrument: Instrument, tick: Tick, added: Added) -> None:
        at = micros(tick.timestamp)
        # A trade's bar of the longest interval holds every bar of its others and outlives
        # them: it alone remembers the trades' fingerprints (memory for one set, not one a bar).
        name, length = self.longest
        start = at - at % length
        outer = instrument.bars.get((name, start))
        print_id = fingerprint(tick)
        if outer is None:
            if self._gone(instrument, name, start, length):
                added.too_late += 1
                return
        elif print_id in outer.seen:
            added.duplicates += 1
            return
        order = order_key(tick, at)
        price, size = tick.price, tick.size
        late = too_late = False
        for name, length in self.intervals:
            start = at - at % length
            bar = instrument.bars.get((name, start))
            if bar is None:
                if self._gone(instrument, name, start, length):
                    too_late = True
                    continue
                late = late or start + length + self.lateness_us <= instrument.watermark_us
                bar = BarState(
                    start, start + length, order, price, order, price, price, price, size,
                    price * size, 1,
                )  # fmt: skip
                instrument.bars[(name, start)] = instrument.open[(name, start)] = bar
                self._changes(instrument, name, bar)
                continue
            late = late or bar.closed or bar.end_us + self.lateness_us <= instrument.watermark_us
            if order < bar.first:
                bar.first, bar.open = order, price
            if order > bar.last:
                bar.last, bar.close = order, price
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.volume += size
            bar.notional += price * size
            bar.count += 1
            self._changes(instrument, name, bar)
        instrument.bars[self.longest[0], at - at % self.longest[1]].seen.add(print_id)
        instrument.watermark_us = max(instrument.watermark_us, at)
        added.late += late
        added.too_late += too_late

    def _gone(self, instrument: Instrument, name: str, start: int, length: int) -> bool:
        """Whether the bar is no longer held (past its retention, or frozen): too late."""
        end = start + length
        return (
            end + self.lateness_us + self.retain_us <= instrument.watermark_us
            or start < instrument.floor_us.get(name, start)
        )

    def _close_open(self, instrument: Instrument, horizon_us: int) -> int:
        """Close the open bars of ``instrument`` ending at or before ``horizon_us``."""
        ended = [(bar_id, bar) for bar_id, bar in instrument.open.items()
                 if bar.end_us <= horizon_us]  # fmt: skip
        for bar_id, bar in ended:
            bar.closed = True
            del instrument.open[bar_id]
            self._changes(instrument, bar_id[0], bar)
        return len(ended)

    def close_idle(self, now: float, wall_us: int) -> int:
        """Close the open bars of instruments without a trade for ``idle_close_s`` (monotonic
        ``now``) whose end plus the lateness has passed on the wall clock ``wall_us``; return
        how many were closed."""
        closed = 0
        for instrument in self.instruments.values():
            if instrument.open and now - instrument.last_arrival >= self.idle_close_s:
                closed += self._close_open(instrument, wall_us - self.lateness_us)
        return closed

    def freeze_before(self, key: bytes, at_us: int) -> None:
        """Forget the bars of ``key`` holding ``at_us`` or earlier, and refuse trades for them
        (after a rebuild that may have missed their first trades)."""
        instrument = self.instruments.get(key)
        if instrument is None:
            return
        for name, length in self.intervals:
            floor = at_us - at_us % length + length
            instrument.floor_us[name] = max(instrument.floor_us.get(name, floor), floor)
        for name, start in list(instrument.bars):
            if start < instrument.floor_us[name]:
                del instrument.bars[(name, start)]
                instrument.open.pop((name, start), None)
                self._changed.pop((key, name, start), None)

    def mark_all(self, keys: Iterable[bytes]) -> None:
        """Emit every bar of these instruments at the next flush (after a rebuild)."""
        for key in keys:
            instrument = self.instruments.get(key)
            if instrument is not None:
                for (name, _), bar in instrument.bars.items():
                    self._changes(instrument, name, bar)

    def forget(self, keys: Iterable[bytes]) -> None:
        gone = {key for key in keys if self.instruments.pop(key, None) is not None}
        if gone:
            self._changed = {k: v for k, v in self._changed.items() if k[0] not in gone}
            self._traded = {k: v for k, v in self._traded.items() if k not in gone}

    def flush(self) -> tuple[dict[bytes, list[Bar]], list[tuple[bytes, str]]]:
        """The current version of every bar changed since the last flush, by instrument key;
        closed bars past their retention are forgotten. Also the bars that no record can hold
        (key and reason)."""
        out: dict[bytes, list[Bar]] = {}
        invalid: list[tuple[bytes, str]] = []
        changed, self._changed = self._changed, {}
        for (key, name, start), (instrument, _, bar) in changed.items():
            try:
                out.setdefault(key, []).append(self._record(instrument, name, bar))
            except InvalidRecord as exc:
                invalid.append((key, f"{name} bar at {start}: {exc}"))
        traded, self._traded = self._traded, {}
        for instrument in traded.values():
            self._expire(instrument)
        return out, invalid

    def _expire(self, instrument: Instrument) -> None:
        """Forget closed bars past their retention, oldest first; the scan stops at the first
        bar still held, so a bar made late waits for those made before it (a bound, not
        exactness, is what memory needs)."""
        horizon = instrument.watermark_us - self.lateness_us - self.retain_us
        expired = []
        for bar_id, bar in instrument.bars.items():
            if not bar.closed or bar.end_us > horizon:
                break
            expired.append(bar_id)
        for name, start in expired:
            del instrument.bars[(name, start)]
            end = start + self.lengths[name]
            instrument.floor_us[name] = max(instrument.floor_us.get(name, end), end)

    def _record(self, instrument: Instrument, interval: str, bar: BarState) -> Bar:
        return Bar(
            exchange=instrument.exchange, symbol=instrument.symbol, interval=interval,
            timestamp=_EPOCH + timedelta(microseconds=bar.start_us),
            open=bar.open, high=bar.high, low=bar.low, close=bar.close,
            volume=bar.volume, trade_count=bar.count, closed=bar.closed, source=self.source,
            vwap=bar.vwap,
        )  # fmt: skip
