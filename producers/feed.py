"""What a live producer knows about its feed, shared by every venue: message and record counts,
the connection's state, and per instrument the reconnects, the gaps filled and left unfilled, and
when it last had data. The reconnect loop and the venue write it; ``/metrics`` and ``/health``
read it when asked, so the hot path only stores numbers.

The instruments are the ones a producer subscribes (``--symbols``), plus any other symbol its
venue sends data for, up to :data:`MAX_INSTRUMENTS`: the label set is bounded by configuration,
not by what arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Self

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketdata.records import Bar, Tick

MAX_INSTRUMENTS: Final = 10_000


@dataclass(slots=True)
class InstrumentStats:
    records: int = 0
    reconnects: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    gap_records: int = 0
    last_data: float | None = None  # time.monotonic() of its newest record


@dataclass
class LiveStats:
    """One live feed (a venue connection and the instruments it carries)."""

    venue: str
    instruments: dict[str, InstrumentStats] = field(default_factory=dict)
    # The liveness of the connection: any message counts, heartbeats and pings too.
    watchdog_s: float = 30.0
    messages: int = 0
    records: int = 0
    malformed: int = 0
    ignored: int = 0
    connections: int = 0
    reconnects: int = 0
    rotations: int = 0
    resubscribes: int = 0
    gap_records: int = 0
    unfilled_gaps: int = 0
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    last_error: str = ""
    connected: bool = False
    started: float = field(default_factory=time.monotonic)
    last_heard: float | None = None

    @classmethod
    def of(cls, venue: str, symbols: Iterable[str], *, watchdog_s: float) -> Self:
        return cls(venue, {symbol: InstrumentStats() for symbol in symbols}, watchdog_s)

    def heard(self) -> None:
        """A message arrived: the connection is alive."""
        self.last_heard = time.monotonic()

    def seen(self, records: Sequence[Tick | Bar]) -> None:
        """Records normalised from the feed, about to be published."""
        now = time.monotonic()
        self.records += len(records)
        for record in records:
            instrument = self.instrument(record.symbol)
            if instrument is not None:
                instrument.records += 1
                instrument.last_data = now

    def instrument(self, symbol: str) -> InstrumentStats | None:
        found = self.instruments.get(symbol)
        if found is None and len(self.instruments) < MAX_INSTRUMENTS:
            found = self.instruments[symbol] = InstrumentStats()
        return found

    def reconnected(self) -> None:
        self.reconnects += 1
        for instrument in self.instruments.values():
            instrument.reconnects += 1

    def gap_filled(self, symbol: str, records: int) -> None:
        """One instrument's part of a gap was fetched again: ``records`` of it."""
        self.gap_records += records
        instrument = self.instrument(symbol)
        if instrument is not None:
            instrument.gaps_filled += 1
            instrument.gap_records += records

    def gap_unfilled(self, symbol: str, records: int = 0) -> None:
        """One instrument's part of a gap could not be (entirely) fetched again; ``records``
        of it were."""
        self.unfilled_gaps += 1
        self.gap_records += records
        instrument = self.instrument(symbol)
        if instrument is not None:
            instrument.gaps_unfilled += 1
            instrument.gap_records += records

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the connection last said anything (since the start, if never)."""
        return (now or time.monotonic()) - (self.last_heard or self.started)

    def healthy(self) -> bool:
        """Connected, and heard from lately: connected and receiving. Twice the watchdog's time,
        because a quiet venue is probed only once that time has passed (its answer counts)."""
        return self.connected and self.silent_for() <= 2 * self.watchdog_s


class FeedMetrics(Collector):
    """The feeds' counts as Prometheus metrics, read when scraped."""

    def __init__(self, feeds: Sequence[LiveStats]) -> None:
        self.feeds = feeds

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        connected = GaugeMetricFamily(
            "mdp_producer_connected", "1 while the venue connection is open", labels=["venue"]
        )
        heard = GaugeMetricFamily(
            "mdp_producer_seconds_since_last_message",
            "Seconds since the venue connection last sent anything (heartbeats included)",
            labels=["venue"],
        )
        data = GaugeMetricFamily(
            "mdp_producer_seconds_since_last_data",
            "Seconds since an instrument's newest record (since the start, if none yet)",
            labels=["venue", "symbol"],
        )
        counters = {
            name: CounterMetricFamily(f"mdp_producer_{name}", text, labels=["venue", "symbol"])
            for name, text in (
                ("reconnects", "Connections lost and opened again, per instrument carried"),
                ("gaps_filled", "Gaps after a reconnect fetched again from the venue's history"),
                ("gaps_unfilled", "Gaps after a reconnect not (entirely) fetched again"),
            )
        }
        for feed in self.feeds:
            connected.add_metric([feed.venue], float(feed.connected))
            heard.add_metric([feed.venue], feed.silent_for(now))
            for symbol, stats in feed.instruments.items():
                labels = [feed.venue, symbol]
                data.add_metric(labels, now - (stats.last_data or feed.started))
                counters["reconnects"].add_metric(labels, stats.reconnects)
                counters["gaps_filled"].add_metric(labels, stats.gaps_filled)
                counters["gaps_unfilled"].add_metric(labels, stats.gaps_unfilled)
        yield from (connected, heard, data, *counters.values())
