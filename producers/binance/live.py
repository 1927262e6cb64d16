"""`mdp produce binance`: live trades, klines and best bid/ask into the raw topics.

binance-connector's stream client reads in a thread of its own; its callback only hands each
frame to asyncio (``call_soon_threadsafe``), where it is normalised and published in small
per-instrument envelopes. :class:`BinanceLive` is a venue of the one reconnect loop
(``producers.reconnect``), which keeps the connection: it backs off, watches for silence (Binance
pings every 20 s, so silence means trouble: :meth:`BinanceLive.probe` says so), and after a loss
asks for the gap to be filled over REST: the closed klines, the trades (by trade id) and the
aggregate trades (by aggregate id) after the last ones seen. Before Binance's 24-hour limit, or
when Binance announces a ``serverShutdown``, :meth:`BinanceLive.serve` asks for a rotation: the
loop opens and subscribes the new connection before it closes the old one; the overlap is
deduplicated downstream (processors, sink), which is why a bookTicker update is stamped with the
time its first copy arrived (:class:`FirstSeen`): both copies then have one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec

from marketdata.errors import MarketDataError, TransientError
from marketdata.records import Bar, Tick
from producers.binance.connection import (
    ConnectionLog,
    Stopped,
    StreamClient,
    close_blocking,
    in_thread,
    kept_or_closed,
)
from producers.binance.connector import RestClient
from producers.binance.history import (
    INTERVAL_MS,
    PAGE,
    BinanceRest,
    KlinePager,
    Rejected,
    agg_trades_after,
    trades_after,
)
from producers.binance.normalise import stream_event
from producers.feed import LiveStats
from producers.publisher import Publisher
from producers.reconnect import Ended

log = logging.getLogger(__name__)

MAX_STREAMS_PER_CONNECTION: Final = 1024
_CLOSED: Final = "closed"
_PING: Final = "ping"
_json: Final = msgspec.json.Decoder()
T = TypeVar("T")


@dataclass
class BinanceStats(LiveStats):
    """The feed's :class:`LiveStats` and what its gap fills refetched, by kind."""

    gap_bars: int = 0
    gap_trades: int = 0
    gap_agg_trades: int = 0

    @classmethod
    def of_streams(cls, streams: Iterable[str], *, venue: str = "binance",
                   watchdog_s: float = 30.0) -> BinanceStats:  # fmt: skip
        """The stats of a connection carrying ``streams`` (``btcusdt@trade``, ...)."""
        stats = cls(venue, watchdog_s=watchdog_s)
        for name in streams:
            stats.instrument(name.partition("@")[0].upper())
        return stats


@dataclass(slots=True)
class Connection:
    """A session of the reconnect loop: one subscribed stream connection."""

    number: int
    client: StreamClient
    opened_at: float = field(default_factory=time.monotonic)


class FirstSeen:
    """When each bookTicker update (symbol, update id) was first received, for the last
    ``size`` updates: the stamp of every copy of it. Copies arrive within the overlap of two
    connections (a rotation), seconds at most, far fewer updates than ``size``."""

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, int], datetime] = OrderedDict()

    def __call__(self, symbol: str, update: int, received_at: datetime) -> datetime:
        first = self._seen.setdefault((symbol, update), received_at)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return first


def _event(message: Any) -> Any:
    data = message.get("data", message) if isinstance(message, dict) else None
    return data.get("e") if isinstance(data, dict) else None


def stream_names(symbols: Sequence[str], kinds: Sequence[str]) -> list[list[str]]:
    """``btcusdt@trade``-style names for every symbol and kind (``trade``, ``kline_1m``, ...),
    in groups of at most 1024, Binance's limit for one connection; a symbol's streams stay in
    one group."""
    groups: list[list[str]] = [[]]
    for symbol in symbols:
        names = [f"{symbol.lower()}@{kind}" for kind in kinds]
        if len(groups[-1]) + len(names) > MAX_STREAMS_PER_CONNECTION:
            groups.append([])
        groups[-1].extend(names)
    return [group for group in groups if group]


# What the gap fill refetches by id after a reconnect: the stream's source, the REST pager.
_BY_ID: Final = (
    ("binance.trade", "historicalTrades", trades_after),
    ("binance.aggTrade", "aggTrades", agg_trades_after),
)


class BinanceLive:
    """The Binance venue of the reconnect loop (:class:`producers.reconnect.Venue`): run it with
    ``ReconnectLoop[Connection](live, Timing(...)).run(stop)``."""

    def __init__(
        self, stream_url: str, rest: RestClient, streams: Sequence[str], publisher: Publisher,
        *, stats: BinanceStats | None = None, watchdog_s: float = 30.0, idle_s: float = 0.05,
        rotate_s: float = 23 * 3600, max_gap_pages: int = 20, time_unit: str | None = None,
    ) -> None:  # fmt: skip
        self.stream_url = stream_url
        self.rest = rest
        self.streams = list(streams)
        self.publisher = publisher
        self.stats = stats or BinanceStats.of_streams(self.streams, watchdog_s=watchdog_s)
        # An idle loop looks at the stop and the rotation this often (the publisher sends by
        # itself: nothing to flush on a timer).
        self.idle_s = idle_s
        self.rotate_s = rotate_s
        self.max_gap_pages = max_gap_pages
        # None: Binance's default (milliseconds); "MICROSECOND" asks the streams for µs. The REST
        # client of the gap fill must ask for the same, or a refetched trade's time differs.
        self.time_unit = time_unit
        self.quote_clock = FirstSeen()
        self._queue: asyncio.Queue[tuple[int, datetime, str]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._last_closed: dict[tuple[str, str], datetime] = {}
        # The newest id seen per (source, symbol), for the gap fill by id.
        self._last_id: dict[tuple[str, str], int] = {}

    # Connections ---------------------------------------------------------------------------

    def _connect(self, number: int, loop: asyncio.AbstractEventLoop) -> StreamClient:
        """Open and subscribe connection ``number`` (blocking: run in a thread)."""

        def post(item: tuple[int, datetime, str]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the process is ending
                loop.call_soon_threadsafe(self._queue.put_nowait, item)

        client = StreamClient(
            stream_url=self.stream_url, is_combined=True, timeout=self.stats.watchdog_s,
            time_unit=self.time_unit, connection_log=ConnectionLog(number),
            on_message=lambda _, message: post((number, datetime.now(UTC), message)),
            on_close=lambda *_: post((number, datetime.now(UTC), _CLOSED)),
            on_error=lambda *_: post((number, datetime.now(UTC), _CLOSED)),
            on_ping=lambda *_: post((number, datetime.now(UTC), _PING)),
        )  # fmt: skip
        try:
            # One SUBSCRIBE for every stream: Binance takes at most 5 messages a second.
            client.subscribe(self.streams, id=number)
        except Exception:
            close_blocking(client)
            raise
        return client

    async def open(self) -> Connection:
        """Connection number n, subscribed. The connect blocks in a thread; when the loop stops
        waiting for it (a stop, the open timeout), a connection completed later is closed."""
        number = next(self._ids)
        loop = asyncio.get_running_loop()
        opening = in_thread(lambda: self._connect(number, loop), f"binance-connect-{number}")
        try:
            client = await kept_or_closed(opening)
        except MarketDataError:
            raise
        except Exception as exc:  # websocket-client raises many kinds; all mean "not now"
            raise TransientError(f"{self.stream_url}: {exc or type(exc).__name__}") from exc
        log.info("connection %d subscribed to %d streams", number, len(self.streams))
        return Connection(number, client)

    async def close(self, session: Connection) -> None:
        await in_thread(lambda: close_blocking(session.client), "binance-close")

    async def probe(self, session: Connection) -> bool:
        return False  # Binance pings every 20 s: a silent connection is lost

    async def resubscribe(self, session: Connection) -> None:
        await in_thread(lambda: session.client.subscribe(self.streams, id=session.number),
                        "binance-subscribe")  # fmt: skip

    async def finish(self) -> None:
        """The frames already received, then what is buffered to Kafka."""
        while not self._queue.empty():
            _, received_at, frame = self._queue.get_nowait()
            if frame is not _CLOSED and frame is not _PING:
                await self._handle(received_at, frame)
        await self.publisher.flush(wait=True)

    # Frames --------------------------------------------------------------------------------

    async def serve(self, session: Connection, until: asyncio.Event) -> Ended:
        """Handle frames until the connection closes, rotation is due, or ``until`` is set.
        Frames of an earlier connection (a rotation's overlap) are handled too."""
        while not until.is_set():
            if time.monotonic() >= session.opened_at + self.rotate_s:
                return Ended("rotate", "the connection's 24-hour limit is near")
            if self._queue.empty():
                # Waiting costs a task; a busy stream takes frames without one (below).
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout=self.idle_s)
                except TimeoutError:
                    continue
            else:
                item = self._queue.get_nowait()
            number, received_at, frame = item
            if number != session.number:
                if frame is not _CLOSED and frame is not _PING:
                    await self._handle(received_at, frame)
                continue
            if frame is _CLOSED:
                return Ended("lost", "the connection closed")
            self.stats.heard()
            if frame is _PING:
                continue
            if await self._handle(received_at, frame):
                # Binance closes this connection soon: move to a new one first, without a gap.
                return Ended("rotate", "Binance announced a server shutdown")
        return Ended("stopped")

    async def _handle(self, received_at: datetime, frame: str) -> bool:
        """Publish a frame's records or dead-letter it; whether it announced a server
        shutdown."""
        self.stats.messages += 1
        try:
            # msgspec parses JSON ~1.4x faster than the standard library (BENCHMARKS.md).
            message = _json.decode(frame)
            if _event(message) == "serverShutdown":
                log.info("Binance announced a server shutdown; rotating the connection")
                return True
            records = stream_event(message, received_at, self.quote_clock)
        except Exception as exc:  # a frame is data from the network: it may never end the stream
            # (msgspec raises RecursionError for deep nesting; the normalisers InvalidRecord)
            self.stats.malformed += 1
            reason = f"malformed Binance message: {exc}" if str(exc) else type(exc).__name__
            await self.publisher.dead(frame.encode(errors="replace"), reason[:2000], "binance.ws")
            return False
        if records:
            self._remember(records)
            self.stats.seen(records)
            await self.publisher.add(records)
        return False

    def _remember(self, records: list[Tick] | list[Bar]) -> None:
        """The newest trade ids and closed bars, where a gap fill starts."""
        for record in records:
            if isinstance(record, Tick):
                if record.source in {"binance.trade", "binance.aggTrade"}:
                    self._last_id[(record.source, record.symbol)] = int(record.trade_id)
            elif record.closed:
                key = (record.symbol, record.interval)
                previous = self._last_closed.get(key)
                if previous is None or record.timestamp > previous:
                    self._last_closed[key] = record.timestamp

    # The gap fill --------------------------------------------------------------------------

    async def fill_gap(self, session: Connection, since: datetime) -> None:
        """Fetch over REST what the gap took: the trades and aggregate trades after the last
        ids seen (up to ``max_gap_pages`` pages a series; beyond that the gap is logged and
        counted as unfilled), and the closed bars after the last one seen. Each instrument's
        part is reported to the stats: filled, or not entirely."""
        halt = threading.Event()  # set once the fill ends: a REST retry still asleep gives up

        def sleep(seconds: float) -> None:
            if halt.wait(seconds):
                raise Stopped

        rest = BinanceRest(self.rest, sleep=sleep)
        fetched: Counter[str] = Counter()
        unfilled: set[str] = set()
        try:
            for source, endpoint, pager in _BY_ID:
                for (seen, symbol), last_id in list(self._last_id.items()):
                    if seen == source:
                        count, complete = await self._refetch_by_id(
                            rest, pager, endpoint=endpoint, series=(source, symbol),
                            last_id=last_id,
                        )  # fmt: skip
                        fetched[symbol] += count
                        if not complete:
                            unfilled.add(symbol)
            await self._refetch_bars(rest, fetched, unfilled)
        finally:
            halt.set()
        await self.publisher.flush()
        for symbol in sorted(fetched.keys() | unfilled):
            if symbol in unfilled:
                self.stats.gap_unfilled(symbol)
            else:
                self.stats.gap_filled(symbol, fetched[symbol])
        log.warning("stream gap %s → %s: %d records of %d instruments refetched over REST, "
                    "%d instruments not entirely", since.isoformat(),
                    datetime.now(UTC).isoformat(), fetched.total(), len(fetched.keys() | unfilled),
                    len(unfilled))  # fmt: skip

    async def _refetch_by_id(
        self, rest: BinanceRest, pager: Callable[..., Iterator[tuple[list[Tick], Rejected]]], *,
        endpoint: str, series: tuple[str, str], last_id: int,
    ) -> tuple[int, bool]:  # fmt: skip
        """How many were refetched, and whether that was all of them."""
        source, symbol = series
        pages = pager(rest, symbol, last_id, max_pages=self.max_gap_pages)
        fetched = full_pages = 0
        try:
            while (page := await _next_page(pages)) is not None:
                ticks, bad = page
                await self.publisher.add(ticks)
                await self.publisher.dead_rows(bad, f"binance.rest.{endpoint}")
                fetched += len(ticks)
                full_pages += len(ticks) + len(bad) >= PAGE
                if ticks:
                    self._last_id[series] = max(int(t.trade_id) for t in ticks)
        except MarketDataError as exc:
            log.error("gap backfill of %s %s failed: %s", symbol, endpoint, exc)
            full_pages = self.max_gap_pages
        if source == "binance.trade":
            self.stats.gap_trades += fetched
        else:
            self.stats.gap_agg_trades += fetched
        if full_pages >= self.max_gap_pages:
            log.warning("%s of %s after id %d not all refetched", endpoint, symbol,
                        self._last_id[series])  # fmt: skip
            return fetched, False
        return fetched, True

    async def _refetch_bars(self, rest: BinanceRest, fetched: Counter[str],
                            unfilled: set[str]) -> None:  # fmt: skip
        if not self._last_closed:
            return
        try:
            server_time = await in_thread(rest.server_time, "binance-rest")
        except MarketDataError as exc:
            log.error("gap backfill of bars failed: %s", exc)
            unfilled.update(symbol for symbol, _ in self._last_closed)
            return
        for (symbol, interval), last in list(self._last_closed.items()):
            start = last + timedelta(milliseconds=INTERVAL_MS[interval])
            pager = KlinePager(self.rest, symbol, interval, start, None, rest=rest)
            fetched[symbol] += 0
            try:
                bar_pages = pager.pages(server_time)
                while (bar_page := await _next_page(bar_pages)) is not None:
                    closed = [bar for bar in bar_page[0] if bar.closed]
                    await self.publisher.add(closed)
                    await self.publisher.dead_rows(bar_page[1], "binance.rest.klines")
                    self.stats.gap_bars += len(closed)
                    fetched[symbol] += len(closed)
                    if closed:
                        self._last_closed[(symbol, interval)] = closed[-1].timestamp
            except MarketDataError as exc:
                log.error("gap backfill of %s %s failed: %s", symbol, interval, exc)
                unfilled.add(symbol)


async def _next_page(pages: Iterator[T]) -> T | None:
    """The next page, read in a thread (binance-connector blocks); cancelling the wait leaves
    the thread to end by itself."""
    return await in_thread(lambda: next(pages, None), "binance-rest")
