"""`mdp produce binance`: live trades, klines and best bid/ask into the raw topics.

binance-connector's stream client reads in a thread of its own; its callback only hands each
frame to asyncio (``call_soon_threadsafe``), where it is normalised and published in small
per-instrument envelopes. One supervisor keeps the connection: a connection that closes, fails
or stays silent for ``watchdog_s`` (Binance pings every 20 s, so silence means trouble) is
replaced with capped exponential backoff and jitter, and the closed klines missed meanwhile are
fetched over REST. Before Binance's 24-hour limit the connection is rotated without a gap: the
new one is opened and subscribed before the old one is closed; the overlap is deduplicated
downstream (processors, sink).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from binance.spot import Spot
from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

from marketdata.backoff import Backoff
from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Bar, Tick
from producers.binance.history import INTERVAL_MS, PAGE, BinanceRest, KlinePager, trades_after
from producers.binance.normalise import stream_event
from producers.publisher import Publisher

log = logging.getLogger(__name__)

MAX_STREAMS_PER_CONNECTION: Final = 1024
_CLOSED: Final = "closed"
_PING: Final = "ping"
_json: Final = msgspec.json.Decoder()


@dataclass
class LiveStats:
    messages: int = 0
    records: int = 0
    malformed: int = 0
    reconnects: int = 0
    rotations: int = 0
    gap_bars: int = 0
    gap_trades: int = 0
    unfilled_gaps: int = 0
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)


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


class BinanceLive:
    def __init__(
        self, stream_url: str, rest: Spot, streams: Sequence[str], publisher: Publisher,
        *, watchdog_s: float = 30.0, linger_s: float = 0.005, rotate_s: float = 23 * 3600,
        max_backoff_s: float = 30.0, max_gap_pages: int = 20,
    ) -> None:  # fmt: skip
        self.stream_url = stream_url
        self.rest = rest
        self.streams = list(streams)
        self.publisher = publisher
        self.watchdog_s = watchdog_s
        self.linger_s = linger_s
        self.rotate_s = rotate_s
        self.max_gap_pages = max_gap_pages
        self.backoff = Backoff(initial=0.5, maximum=max_backoff_s)
        self.stats = LiveStats()
        self._queue: asyncio.Queue[tuple[int, datetime, str]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._current = 0
        self._last_closed: dict[tuple[str, str], datetime] = {}
        self._last_trade: dict[str, int] = {}
        self._last_message = 0.0
        self._opened_at = 0.0

    # Connections ---------------------------------------------------------------------------

    async def _open(self) -> tuple[int, SpotWebsocketStreamClient]:
        loop = asyncio.get_running_loop()
        number = next(self._ids)

        def on_message(_: Any, message: str) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, (number, datetime.now(UTC), message))

        def on_gone(*_: Any) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, (number, datetime.now(UTC), _CLOSED))

        def on_ping(*_: Any) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, (number, datetime.now(UTC), _PING))

        client = await asyncio.to_thread(
            SpotWebsocketStreamClient, stream_url=self.stream_url, on_message=on_message,
            on_close=on_gone, on_error=on_gone, on_ping=on_ping, is_combined=True,
            timeout=self.watchdog_s,
        )  # fmt: skip
        # One SUBSCRIBE for every stream: Binance takes at most 5 messages a second.
        await asyncio.to_thread(client.subscribe, self.streams, id=number)
        log.info("connection %d subscribed to %d streams", number, len(self.streams))
        return number, client

    async def _open_with_retry(self, stop: asyncio.Event) -> tuple[int, SpotWebsocketStreamClient]:
        while True:
            try:
                return await self._open()
            except Exception as exc:  # websocket-client raises many kinds; all mean "not now"
                if stop.is_set():
                    raise MarketDataError("stopped while connecting") from exc
                delay = self.backoff.next_delay()
                log.warning(
                    "cannot connect to %s (%s); retry in %.1fs", self.stream_url, exc, delay
                )
                await asyncio.sleep(delay)

    @staticmethod
    async def _close(client: SpotWebsocketStreamClient) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(client.stop), 10)
        except Exception as exc:  # a connection already gone cannot be closed twice
            log.debug("closing a stream connection: %s", exc)
        # binance-connector leaves the socket of a lost connection open; release it.
        client.socket_manager.ws.shutdown()

    # The loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._current, client = await self._open_with_retry(stop)
        self._opened_at = self._last_message = time.monotonic()
        try:
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
                    await self._close(client)
                    self.stats.reconnects += 1
                    delay = self.backoff.next_delay()
                    log.warning("stream %s; reconnecting in %.1fs", reason, delay)
                    await asyncio.sleep(delay)
                    self._current, client = await self._open_with_retry(stop)
                    self._opened_at = self._last_message = time.monotonic()
                    await self._fill_gap(lost_at)
        finally:
            await self.publisher.flush(wait=True)
            await self._close(client)

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

    async def _handle(self, received_at: datetime, frame: str) -> None:
        self.stats.messages += 1
        try:
            # msgspec parses JSON ~1.4x faster than the standard library (BENCHMARKS.md).
            message = _json.decode(frame)
            if _event(message) == "serverShutdown":
                # Binance closes this connection soon: move to a new one first, without a gap.
                log.info("Binance announced a server shutdown; rotating the connection")
                self._opened_at = -self.rotate_s
                return
            records = stream_event(message, received_at)
        except (msgspec.DecodeError, InvalidRecord) as exc:
            self.stats.malformed += 1
            await self.publisher.dead(frame.encode(), f"malformed Binance message: {exc}",
                                      "binance.ws")  # fmt: skip
            return
        if not records:
            return
        self.backoff.reset()
        for record in records:
            if isinstance(record, Tick) and record.source == "binance.trade":
                self._last_trade[record.symbol] = int(record.trade_id)
            elif isinstance(record, Bar) and record.closed:
                key = (record.symbol, record.interval)
                previous = self._last_closed.get(key)
                if previous is None or record.timestamp > previous:
                    self._last_closed[key] = record.timestamp
        self.stats.records += len(records)
        await self.publisher.add(records)

    async def _fill_gap(self, lost_at: datetime) -> None:
        """Fetch over REST what the gap took: the closed bars after the last one seen, and the
        trades after the last trade id seen (up to ``max_gap_pages`` pages a symbol; beyond
        that the gap is logged and counted as unfilled)."""
        self.stats.gaps.append((lost_at, datetime.now(UTC)))
        rest = BinanceRest(self.rest)
        for symbol, last_id in list(self._last_trade.items()):
            pages = trades_after(rest, symbol, last_id, max_pages=self.max_gap_pages)
            fetched = full_pages = 0
            try:
                while (page := await asyncio.to_thread(next, pages, None)) is not None:
                    ticks, bad = page
                    await self.publisher.add(ticks)
                    await self.publisher.dead_rows(bad, "binance.rest.historicalTrades")
                    fetched += len(ticks)
                    full_pages += len(ticks) + len(bad) >= PAGE
                    if ticks:
                        self._last_trade[symbol] = int(ticks[-1].trade_id)
            except MarketDataError as exc:
                log.error("gap backfill of %s trades failed: %s", symbol, exc)
                full_pages = self.max_gap_pages
            self.stats.gap_trades += fetched
            if full_pages >= self.max_gap_pages:
                self.stats.unfilled_gaps += 1
                log.warning("trades of %s after id %d not all refetched: the gap is too long",
                            symbol, self._last_trade[symbol])  # fmt: skip
        try:
            server_time = await asyncio.to_thread(rest.server_time) if self._last_closed else None
        except MarketDataError as exc:
            log.error("gap backfill of bars failed: %s", exc)
            server_time = None
        for (symbol, interval), last in list(self._last_closed.items()):
            if server_time is None:
                break
            start = last + timedelta(milliseconds=INTERVAL_MS[interval])
            pager = KlinePager(self.rest, symbol, interval, start, None, rest=rest)
            try:
                bar_pages = pager.pages(server_time)
                while (bar_page := await asyncio.to_thread(next, bar_pages, None)) is not None:
                    closed = [bar for bar in bar_page[0] if bar.closed]
                    await self.publisher.add(closed)
                    await self.publisher.dead_rows(bar_page[1], "binance.rest.klines")
                    self.stats.gap_bars += len(closed)
                    if closed:
                        self._last_closed[(symbol, interval)] = closed[-1].timestamp
            except MarketDataError as exc:
                log.error("gap backfill of %s %s failed: %s", symbol, interval, exc)
        await self.publisher.flush()
        log.warning("stream gap %s → %s: %d trades and %d closed bars refetched over REST",
                    lost_at.isoformat(), datetime.now(UTC).isoformat(), self.stats.gap_trades,
                    self.stats.gap_bars)  # fmt: skip
