"""Which of several copies of a record to keep: shared by the processors and the sink."""

from __future__ import annotations

from collections.abc import Iterable

from marketdata.records import Bar, BarKey, Tick, TickKey


def unique_ticks(ticks: Iterable[Tick]) -> list[Tick]:
    """Each tick key once, first copy kept (copies of one trade are the same trade)."""
    seen: dict[TickKey, Tick] = {}
    keep = seen.setdefault
    for tick in ticks:
        # Tick.key inlined: every tick of a replayed batch passes here in the sink.
        keep((tick.exchange, tick.symbol, tick.timestamp, tick.source, tick.trade_id), tick)
    return list(seen.values())


def supersedes(new: Bar, old: Bar) -> bool:
    """A later version replaces an earlier one, except that a replayed live version (not
    closed) never overwrites a closed bar."""
    return new.closed or not old.closed


def latest_bars(bars: Iterable[Bar]) -> list[Bar]:
    """Each bar key once: the last version in arrival order that :func:`supersedes` the others."""
    kept: dict[BarKey, Bar] = {}
    get = kept.get
    for bar in bars:
        # supersedes() and Bar.key inlined: this runs for every bar in the processor and the sink.
        key = (bar.exchange, bar.symbol, bar.interval, bar.timestamp, bar.source)
        if bar.closed or (old := get(key)) is None or not old.closed:
            kept[key] = bar
    return list(kept.values())
