"""`mdp produce ibkr`: tick-by-tick trades (and quotes) and 5-second bars from TWS into Kafka.

ib_async runs unchanged, but the producer takes tick-by-tick (99) and real-time-bar (50)
messages from its decoder as the fields TWS sent: ib_async would stamp ticks with the local
arrival time and drop the exchange's, and turn decimal prices into floats (see
``producers.ibkr.normalise``). Its Ticker and RealTimeBarList objects for these subscriptions
therefore stay empty, which also keeps a long-running producer's memory flat.

One supervisor keeps the session: a dropped connection, or one that stays silent past the
watchdog and does not answer a probe, is replaced with capped exponential backoff (TWS restarts
nightly), every subscription is renewed, and the 5-second bars missed meanwhile are fetched
with ``reqHistoricalData``. TWS's own link to IB: on 1100 records are held back; on 1102 (data
kept) they are released; on 1101 (data lost) they are released, everything is resubscribed and
the gap's bars are fetched; with neither within ``restore_s`` the session is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ib_async import IB, Contract, RealTimeBarList

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from marketdata.stopping import until_stopped
from producers.ibkr import normalise, session
from producers.ibkr.contracts import Spec, record_symbol
from producers.ibkr.history import HistoryClient, Request
from producers.publisher import Publisher

log = logging.getLogger(__name__)

BAR_S: Final = 5


@dataclass(frozen=True, slots=True)
class LiveOptions:
    ticks: str | None = "AllLast"  # or "Last" (no odd lots / off-exchange prints), or None
    quotes: bool = False  # tick-by-tick BidAsk
    bars: bool = True  # 5-second real-time bars
    watchdog_s: float = 60.0
    restore_s: float = 120.0
    max_backoff_s: float = 60.0
    max_gap_s: int = 6 * 3600
    flush_s: float = 0.005


@dataclass
class LiveStats:
    messages: int = 0
    records: int = 0
    malformed: int = 0
    sessions: int = 0
    resubscribes: int = 0
    failed_requests: int = 0
    gap_bars: int = 0


def what_to_show(contract: Contract) -> str:
    """Forex has no trades at IB: its bars are of midpoints."""
    return "MIDPOINT" if contract.secType == "CASH" else "TRADES"


class IbkrLive:
    def __init__(
        self, settings: Settings, specs: Sequence[Spec], publisher: Publisher,
        options: LiveOptions | None = None, *,
        connect: Callable[[Settings, int], Awaitable[IB]] = session.connect,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.specs = list(specs)
        self.publisher = publisher
        self.options = options or LiveOptions()
        self.connect = connect
        self.stats = LiveStats()
        self.contracts: dict[Spec, Contract] = {}
        self.rejected: dict[Spec, str] = {}
        self._ids = normalise.TickIds()
        self._routes: dict[int, tuple[str, str]] = {}  # reqId → (record symbol, what it is)
        self._bar_lists: dict[int, RealTimeBarList] = {}
        self._records: list[Tick | Bar] = []
        self._dead: list[tuple[bytes, str]] = []
        self._wake = asyncio.Event()
        self._held_since: float | None = None
        self._resubscribe = False
        self._last_bar: dict[str, datetime] = {}
        self._gap_from: datetime | None = None
        self._last_data = time.monotonic()
        self._closing = False

    @property
    def subscriptions(self) -> list[tuple[str, str]]:
        """The live subscriptions: (record symbol, AllLast / Last / BidAsk / bars)."""
        return sorted(self._routes.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; raises only when no instrument can be subscribed.

        A connection lost at any stage (connecting, synchronising, qualifying contracts,
        subscribing, filling a gap, streaming) ends that session only: the next one starts
        after the backoff. ``stop`` interrupts every stage and every wait at once."""
        backoff = Backoff(initial=1.0, maximum=self.options.max_backoff_s)
        pump = asyncio.create_task(self._pump())
        try:
            while not stop.is_set():
                try:
                    _, ended = await until_stopped(self._connection(stop, backoff), stop)
                except (OSError, MarketDataError) as exc:  # OSError: ib_async's ConnectionError
                    if isinstance(exc, MarketDataError) and not exc.retriable:
                        raise
                    ended = f"{type(exc).__name__}: {exc}"
                if ended is None or stop.is_set():
                    return
                delay = backoff.next_delay()
                log.warning("TWS session ended (%s); reconnecting in %.1f s", ended, delay)
                await wait_or_stop(stop, delay)
        finally:
            self._closing = True
            self._wake.set()
            await pump

    async def _connection(self, stop: asyncio.Event, backoff: Backoff) -> str:
        """One connection, from connecting to its end; says why it ended."""
        ib = await self.connect(self.settings, self.settings.ibkr_client_id)
        started = time.monotonic()
        try:
            ended = await self._session(ib, stop)
        finally:
            self._mark_gap()
            ib.disconnect()
        if time.monotonic() - started > 60:
            backoff.reset()
        return ended

    # One connection ---------------------------------------------------------------------------

    async def _session(self, ib: IB, stop: asyncio.Event) -> str:
        self.stats.sessions += 1
        lost = asyncio.Event()
        ib.disconnectedEvent += lost.set
        ib.errorEvent += self._on_error
        ib.updateEvent += self._on_data
        decoder = ib.client.decoder
        decoder.handlers[normalise.TICK_BY_TICK] = self._on_tick
        decoder.handlers[normalise.REALTIME_BAR] = self._on_bar
        await self._qualify(ib)
        self._subscribe(ib)
        await self._fill_gap(ib)
        while not stop.is_set() and not lost.is_set():
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, lost)]
            try:
                await asyncio.wait(waiters, timeout=min(5.0, self.options.watchdog_s),
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._resubscribe:
                self._resubscribe = False
                self._mark_gap()
                self._subscribe(ib)
                await self._fill_gap(ib)
            if not await self._healthy(ib):
                return "unhealthy"
        return "connection to TWS lost" if lost.is_set() else "stopping"

    async def _healthy(self, ib: IB) -> bool:
        if self._held_since and time.monotonic() - self._held_since > self.options.restore_s:
            log.warning("TWS reported no restored connectivity within %.0f s; reconnecting",
                        self.options.restore_s)  # fmt: skip
            return False
        if time.monotonic() - self._last_data < self.options.watchdog_s:
            return True
        try:
            await asyncio.wait_for(ib.reqCurrentTimeAsync(), min(10.0, self.options.watchdog_s))
        except (TimeoutError, ConnectionError):
            log.warning("TWS silent for %.0f s and not answering; reconnecting",
                        self.options.watchdog_s)  # fmt: skip
            return False
        return True

    async def _qualify(self, ib: IB) -> None:
        wanted = [spec for spec in self.specs if spec not in self.contracts]
        if not wanted:
            return
        good, bad = await session.qualify(ib, wanted)
        self.contracts.update(good)
        self.rejected = {spec: why for spec, why in {**self.rejected, **bad}.items()
                         if spec not in self.contracts}  # fmt: skip
        if not self.contracts:
            raise MarketDataError(
                "no instrument could be subscribed: "
                + "; ".join(f"{spec.text}: {why}" for spec, why in self.rejected.items())
            )

    def _subscribe(self, ib: IB) -> None:
        """(Re)request every subscription; ib_async cancels nothing on its own after 1101."""
        if self._routes:
            self.stats.resubscribes += 1
            self._cancel(ib)
        for contract in self.contracts.values():
            symbol = record_symbol(contract)
            kinds = [k for k in (self.options.ticks, "BidAsk" if self.options.quotes else None)
                     if k]  # fmt: skip
            for kind in kinds:
                ticker = ib.reqTickByTickData(contract, kind)
                self._routes[ib.wrapper.ticker2ReqId[kind][ticker]] = (symbol, kind)
            if self.options.bars:
                bars = ib.reqRealTimeBars(contract, BAR_S, what_to_show(contract), useRTH=False)
                self._routes[bars.reqId] = (symbol, "bars")
                self._bar_lists[bars.reqId] = bars
        log.info("subscribed %s", ", ".join(sorted({s for s, _ in self._routes.values()})))

    def _cancel(self, ib: IB) -> None:
        by_symbol = {record_symbol(c): c for c in self.contracts.values()}
        for req_id, (symbol, kind) in self._routes.items():
            with contextlib.suppress(ConnectionError):
                if kind == "bars":
                    ib.cancelRealTimeBars(self._bar_lists.pop(req_id))
                else:
                    ib.cancelTickByTickData(by_symbol[symbol], kind)
        self._routes.clear()
        self._bar_lists.clear()

    # Gaps -------------------------------------------------------------------------------------

    def _mark_gap(self) -> None:
        """Data stopped arriving: the missed bars begin where the last ones ended (the first
        mark of a gap counts; later ones, before it is filled, do not move it)."""
        self._gap_from = self._gap_from or self._gap_start()

    def _gap_start(self) -> datetime:
        """Where the missed bars begin: after the oldest of the newest bars per symbol."""
        now = datetime.now(UTC)
        wanted = [record_symbol(c) for c in self.contracts.values()]
        if not self.options.bars or not wanted:
            return now
        newest = [self._last_bar.get(symbol) for symbol in wanted]
        known = [t + timedelta(seconds=BAR_S) for t in newest if t is not None]
        return min(known) if known else now

    async def _fill_gap(self, ib: IB) -> None:
        """Fetch the bars missed since the gap began; the gap stays marked until it is filled,
        so a connection lost meanwhile leaves it for the next session."""
        start = self._gap_from
        if start is None or not self.options.bars:
            self._gap_from = None
            return
        now = datetime.now(UTC)
        end = now.replace(microsecond=0) - timedelta(seconds=now.second % BAR_S)
        if start < end - timedelta(seconds=self.options.max_gap_s):
            log.warning("gap since %s is longer than %d s; filling its newest part only",
                        start.isoformat(), self.options.max_gap_s)  # fmt: skip
            start = end - timedelta(seconds=self.options.max_gap_s)
        if start >= end:
            self._gap_from = None
            return
        client = HistoryClient(ib)
        for contract in self.contracts.values():
            request = Request(contract, "5s", what_to_show(contract))
            try:
                async for page in client.pages(request, start, end, lambda: datetime.now(UTC)):
                    self._records.extend(page.bars)
                    self._dead += [(repr(row).encode(), why) for row, why in page.rejected]
                    self.stats.gap_bars += len(page.bars)
            except MarketDataError as exc:
                if exc.retriable and not ib.isConnected():
                    raise
                log.error("could not fill the gap of %s: %s", record_symbol(contract), exc)
        self._gap_from = None
        self._wake.set()
        log.info("gap %s to %s filled: %d bars so far", start.isoformat(), end.isoformat(),
                 self.stats.gap_bars)  # fmt: skip

    # Messages (called by ib_async's decoder, in the event loop) --------------------------------

    def _on_data(self) -> None:
        self._last_data = time.monotonic()

    def _on_tick(self, fields: list[str]) -> None:
        self._take(fields, 1, lambda symbol: normalise.tick_by_tick(
            fields, symbol, datetime.now(UTC), self._ids))  # fmt: skip

    def _on_bar(self, fields: list[str]) -> None:
        def bars(symbol: str) -> list[Bar]:
            bar = normalise.realtime_bar(fields, symbol)
            self._last_bar[symbol] = max(bar.timestamp, self._last_bar.get(symbol, bar.timestamp))
            return [bar]

        self._take(fields, 2, bars)

    def _take(
        self, fields: list[str], req_index: int, build: Callable[[str], Sequence[Tick | Bar]]
    ) -> None:
        """``fields[req_index]`` is the request id, which names the subscription."""
        self.stats.messages += 1
        try:
            route = self._routes.get(int(fields[req_index]))
        except (IndexError, ValueError):
            route = None
        reason = None
        if route is None:
            reason = "message for no subscription of this producer"
        else:
            try:
                self._records.extend(build(route[0]))
            except InvalidRecord as exc:
                reason = str(exc)
            except Exception as exc:  # a normaliser's bug must not lose the message: logged, kept
                log.exception("IB normaliser failed on message %s", fields[:1])
                reason = f"IB message not normalised: {type(exc).__name__}: {exc}"
        if reason is not None:  # kept as the TWS frame came, for whoever reads it
            self._dead.append(("\0".join(fields).encode(), reason))
        self._wake.set()

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        session.log_code(req_id, code, message)
        if code == session.CONNECTIVITY_LOST:
            self._held_since = self._held_since or time.monotonic()
            self._mark_gap()
        elif code in (session.RESTORED_DATA_KEPT, session.RESTORED_DATA_LOST):
            self._held_since = None
            self._wake.set()
            if code == session.RESTORED_DATA_LOST:
                self._resubscribe = True
            else:
                self._gap_from = None
        elif req_id in self._routes and code not in session.INFORMATIONAL:
            symbol, kind = self._routes.pop(req_id)
            self.stats.failed_requests += 1
            log.error("%s %s subscription failed (IB error %d: %s); the others go on",
                      symbol, kind, code, message)  # fmt: skip

    async def _pump(self) -> None:
        """Publish what the decoder produced, in small per-instrument envelopes."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._held_since is None or self._closing:
                records, self._records = self._records, []
                self.stats.records += len(records)
                await self.publisher.add(records)
            dead, self._dead = self._dead, []
            for raw, reason in dead:
                self.stats.malformed += 1
                log.warning("malformed IB message dead-lettered: %s", reason)
                await self.publisher.dead(raw, reason, "ibkr.live")
            await asyncio.sleep(self.options.flush_s)
            await self.publisher.flush()
            if self._closing and not self._records:
                await self.publisher.flush(wait=True)
                return
