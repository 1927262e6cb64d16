"""`mdp produce binance`: live trades, klines and best bid/ask into the raw topics.

binance-connector's stream client reads in a thread of its own; its callback only hands each
frame to asyncio (``call_soon_threadsafe``), where it is normalised and published in small
per-instrument envelopes. One supervisor keeps the connection: a connection that closes, fails
or stays silent for ``watchdog_s`` (Binance pings every 20 s, so silence means trouble) is
replaced with capped exponential backoff and jitter, and what the gap took is fetched over REST:
the closed klines, the trades (by trade id) and the aggregate trades (by aggregate id) after the
last ones seen. Before Binance's 24-hour limit the connection is rotated without a gap: the new
one is opened and subscribed before the old one is closed; the overlap is deduplicated
downstream (processors, sink), which is why a bookTicker update is stamped with the time its
first copy arrived (:class:`FirstSeen`): both copies then have one key. The stop event ends
every wait (connect, backoff, a REST page) at once (see ``connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import MarketDataError
from marketdata.records import Bar, Tick
from producers.binance.connection import (
    ConnectionLog,
    Stopped,
    StreamClient,
    close_blocking,
    close_later,
    in_thread,
    until_stopped,
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
from producers.publisher import Publisher

log = logging.getLogger(__name__)

MAX_STREAMS_PER_CONNECTION: Final = 1024
_CLOSED: Final = "closed"
_PING: Final = "ping"
_json: Final = msgspec.json.Decoder()
T = TypeVar("T")


@dataclass
class LiveStats:
    messages: int = 0
    records: int = 0
    malformed: int = 0
    reconnects: int = 0
    rotations: int = 0
    gap_bars: int = 0
    gap_trades: int = 0
    gap_agg_trades: int = 0
    unfilled_gaps: int = 0
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)


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
    def __init__(
        self, stream_url: str, rest: RestClient, streams: Sequence[str], publisher: Publisher,
        *, watchdog_s: float = 30.0, linger_s: float = 0.005, rotate_s: float = 23 * 3600,
        max_backoff_s: float = 30.0, max_gap_pages: int = 20, time_unit: str | None = None,
    ) -> None:  # fmt: skip
        self.stream_url = stream_url
        self.rest = rest
        self.streams = list(streams)
        self.publisher = publisher
        self.watchdog_s = watchdog_s
        self.linger_s = linger_s
        self.rotate_s = rotate_s
        self.max_gap_pages = max_gap_pages
        # None: Binance's default (milliseconds); "MICROSECOND" asks the streams for µs. The REST
        # client of the gap fill must ask for the same, or a refetched trade's time differs.
        self.time_unit = time_unit
        self.backoff = Backoff(initial=0.5, maximum=max_backoff_s)
        self.stats = LiveStats()
        self.quote_clock = FirstSeen()
        self._queue: asyncio.Queue[tuple[int, datetime, str]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._current = 0
        self._last_closed: dict[tuple[str, str], datetime] = {}
        # The newest id seen per (source, symbol), for the gap fill by id.
        self._last_id: dict[tuple[str, str], int] = {}
        self._last_message = 0.0
        self._opened_at = 0.0
        self._halt = threading.Event()  # the stop event, for REST retries sleeping in a thread

    # Connections ---------------------------------------------------------------------------

    def _connect(self, number: int) -> StreamClient:
        """Open and subscribe connection ``number`` (blocking: run in a thread)."""
        loop = self._loop

        def post(item: tuple[int, datetime, str]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the process is ending
                loop.call_soon_threadsafe(self._queue.put_nowait, item)

        client = StreamClient(
            stream_url=self.stream_url, is_combined=True, timeout=self.watchdog_s,
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

    async def _open(self, stop: asyncio.Event) -> tuple[int, StreamClient]:
        number = next(self._ids)
        opening = in_thread(lambda: self._connect(number), f"binance-connect-{number}")
        client = await until_stopped(opening, stop, abandon=close_later)
        log.info("connection %d subscribed to %d streams", number, len(self.streams))
        return number, client

    async def _open_with_retry(self, stop: asyncio.Event) -> tuple[int, StreamClient]:
        """A subscribed connection, retried with backoff; :class:`Stopped` once ``stop`` is set."""
        while True:
            try:
                return await self._open(stop)
            except Stopped:
                raise
            except Exception as exc:  # websocket-client raises many kinds; all mean "not now"
                delay = self.backoff.next_delay()
                log.warning(
                    "cannot connect to %s (%s); retry in %.1fs", self.stream_url, exc, delay
                )
                if await wait_or_stop(stop, delay):
                    raise Stopped from None

    @staticmethod
    async def _close(client: StreamClient) -> None:
        await in_thread(lambda: close_blocking(client), "binance-close")

    # The loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set; then close the connection and flush, promptly."""
        self._loop = asyncio.get_running_loop()
        self._halt.clear()
        client: StreamClient | None = None
        try:
            self._current, client = await self._open_with_retry(stop)
            self._opened_at = self._last_message = time.monotonic()
            while not stop.is_set():
                reason = await self._pump(stop)
                if reason == "rotate":
                    number, fresh = await self._open_with_retry(stop)
                    old, self._current, client = client, number, fresh
                    self._opened_at = time.monotonic()
                    await self._close(old)
                    self.stats.rotations += 1
                elif reason in {"closed", "silent"}:
                    lost_at = datetime.now(UTC)
                    gone, client = client, None
                    await self._close(gone)
                    self.stats.reconnects += 1
                    delay = self.backoff.next_delay()
                    log.warning("stream %s; reconnecting in %.1fs", reason, delay)
                    if await wait_or_stop(stop, delay):
                        break
                    self._current, client = await self._open_with_retry(stop)
                    self._opened_at = self._last_message = time.monotonic()
                    await self._fill_gap(lost_at, stop)
        except Stopped:
            log.info("stopped while connecting or fetching a gap")
        finally:
            self._halt.set()
            # The venue first (no more frames), then the frames already received, then what is
            # buffered to Kafka.
            if client is not None:
                await self._close(client)
            while not self._queue.empty():
                _, received_at, frame = self._queue.get_nowait()
                if frame is not _CLOSED and frame is not _PING:
                    await self._handle(received_at, frame)
            await self.publisher.flush(wait=True)

    async def _pump(self, stop: asyncio.Event) -> str:
        """Handle frames until the connection is lost or silent, rotation is due, or stop."""
        while not stop.is_set():
            now = time.monotonic()
            if now >= self._opened_at + self.rotate_s:
                return "rotate"
            if now - self._last_message > self.watchdog_s:
                return "silent"
            if self._queue.empty():
                # Waiting costs a task; a busy stream takes frames without one (below).
                try:
                    item = await asyncio.wait_for(
                        self._queue.get(), timeout=max(self.linger_s, 0.001)
                    )
                except TimeoutError:
                    await self.publisher.flush()
                    continue
            else:
                item = self._queue.get_nowait()
            number, received_at, frame = item
            if number != self._current:
                if frame is not _CLOSED and frame is not _PING:
                    await self._handle(received_at, frame)  # the overlap of a rotation
                continue
            if frame is _CLOSED:
                return "closed"
            self._last_message = time.monotonic()
            if frame is _PING:  # Binance pings every 20 s: the connection is alive
                continue
            await self._handle(received_at, frame)
            if time.monotonic() - self.publisher.last_flush >= self.linger_s:
                await self.publisher.flush()
        return "stop"

    def _records(self, received_at: datetime, frame: str) -> list[Tick] | list[Bar] | None:
        """A frame's records; None for one without market data. Raises only what is to be
        dead-lettered."""
        # msgspec parses JSON ~1.4x faster than the standard library (BENCHMARKS.md).
        message = _json.decode(frame)
        if _event(message) == "serverShutdown":
            # Binance closes this connection soon: move to a new one first, without a gap.
            log.info("Binance announced a server shutdown; rotating the connection")
            self._opened_at = -self.rotate_s
            return None
        return stream_event(message, received_at, self.quote_clock)

    async def _handle(self, received_at: datetime, frame: str) -> None:
        self.stats.messages += 1
        try:
            records = self._records(received_at, frame)
        except Exception as exc:  # a frame is data from the network: it may never end the stream
            # (msgspec raises RecursionError for deep nesting; the normalisers InvalidRecord)
            self.stats.malformed += 1
            reason = f"malformed Binance message: {exc}" if str(exc) else type(exc).__name__
            await self.publisher.dead(frame.encode(errors="replace"), reason[:2000], "binance.ws")
            return
        if not records:
            return
        self.backoff.reset()
        for record in records:
            if isinstance(record, Tick):
                if record.source in {"binance.trade", "binance.aggTrade"}:
                    self._last_id[(record.source, record.symbol)] = int(record.trade_id)
            elif record.closed:
                key = (record.symbol, record.interval)
                previous = self._last_closed.get(key)
                if previous is None or record.timestamp > previous:
                    self._last_closed[key] = record.timestamp
        self.stats.records += len(records)
        await self.publisher.add(records)

    # The gap fill --------------------------------------------------------------------------

    def _gap_rest(self) -> BinanceRest:
        return BinanceRest(self.rest, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        if self._halt.wait(seconds):
            raise Stopped

    async def _fill_gap(self, lost_at: datetime, stop: asyncio.Event) -> None:
        """Fetch over REST what the gap took: the trades and aggregate trades after the last
        ids seen (up to ``max_gap_pages`` pages a series; beyond that the gap is logged and
        counted as unfilled), and the closed bars after the last one seen."""
        self.stats.gaps.append((lost_at, datetime.now(UTC)))
        rest = self._gap_rest()
        for source, endpoint, pager in _BY_ID:
            for (seen, symbol), last_id in list(self._last_id.items()):
                if seen == source:
                    await self._refetch_by_id(rest, pager, endpoint=endpoint,
                                              series=(source, symbol), last_id=last_id,
                                              stop=stop)  # fmt: skip
        await self._refetch_bars(rest, stop)
        await self.publisher.flush()
        log.warning("stream gap %s → %s: %d trades, %d aggregate trades and %d closed bars "
                    "refetched over REST", lost_at.isoformat(), datetime.now(UTC).isoformat(),
                    self.stats.gap_trades, self.stats.gap_agg_trades,
                    self.stats.gap_bars)  # fmt: skip

    async def _refetch_by_id(
        self, rest: BinanceRest, pager: Callable[..., Iterator[tuple[list[Tick], Rejected]]], *,
        endpoint: str, series: tuple[str, str], last_id: int, stop: asyncio.Event,
    ) -> None:  # fmt: skip
        source, symbol = series
        pages = pager(rest, symbol, last_id, max_pages=self.max_gap_pages)
        fetched = full_pages = 0
        try:
            while (page := await self._next_page(pages, stop)) is not None:
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
            self.stats.unfilled_gaps += 1
            log.warning("%s of %s after id %d not all refetched: the gap is too long",
                        endpoint, symbol, self._last_id[series])  # fmt: skip

    async def _next_page(self, pages: Iterator[T], stop: asyncio.Event) -> T | None:
        return await until_stopped(in_thread(lambda: next(pages, None), "binance-rest"), stop)

    async def _refetch_bars(self, rest: BinanceRest, stop: asyncio.Event) -> None:
        if not self._last_closed:
            return
        try:
            server_time = await until_stopped(in_thread(rest.server_time, "binance-rest"), stop)
        except MarketDataError as exc:
            log.error("gap backfill of bars failed: %s", exc)
            return
        for (symbol, interval), last in list(self._last_closed.items()):
            start = last + timedelta(milliseconds=INTERVAL_MS[interval])
            pager = KlinePager(self.rest, symbol, interval, start, None, rest=rest)
            try:
                bar_pages = pager.pages(server_time)
                while (bar_page := await self._next_page(bar_pages, stop)) is not None:
                    closed = [bar for bar in bar_page[0] if bar.closed]
                    await self.publisher.add(closed)
                    await self.publisher.dead_rows(bar_page[1], "binance.rest.klines")
                    self.stats.gap_bars += len(closed)
                    if closed:
                        self._last_closed[(symbol, interval)] = closed[-1].timestamp
            except MarketDataError as exc:
                log.error("gap backfill of %s %s failed: %s", symbol, interval, exc)
