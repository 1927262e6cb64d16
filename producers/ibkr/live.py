"""`mdp produce ibkr`: tick-by-tick trades (and quotes) and 5-second bars from TWS into Kafka.

ib_async runs unchanged, but the producer takes tick-by-tick (99) and real-time-bar (50)
messages from its decoder as the fields TWS sent: ib_async would stamp ticks with the local
arrival time and drop the exchange's, and turn decimal prices into floats (see
``producers.ibkr.normalise``). Its Ticker and RealTimeBarList objects for these subscriptions
therefore stay empty, which also keeps a long-running producer's memory flat.

:class:`IbkrLive` is the venue of the shared :class:`producers.reconnect.ReconnectLoop`, which
keeps the session (backoff, watchdog, gaps); the hooks here are IB's: a session is connected,
its contracts qualified and subscribed; the watchdog's probe is ``reqCurrentTime``; a gap is
filled with ``reqHistoricalData`` 5-second bars. TWS's own link to IB: on 1100 records are held
back; on 1102 (data kept) they are released; on 1101 (data lost) they are released and the loop
resubscribes everything and fills the gap; with neither within ``restore_s`` the session is
replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from ib_async import IB, Contract, RealTimeBarList

from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from producers.feed import LiveStats
from producers.ibkr import normalise, session
from producers.ibkr.contracts import Spec, record_symbol
from producers.ibkr.history import HistoryClient, Request
from producers.publisher import Publisher
from producers.reconnect import Ended, Timing

log = logging.getLogger(__name__)

BAR_S: Final = 5
VENUE: Final = "ibkr"


@dataclass(frozen=True, slots=True)
class LiveOptions:
    ticks: str | None = "AllLast"  # or "Last" (no odd lots / off-exchange prints), or None
    quotes: bool = False  # tick-by-tick BidAsk
    bars: bool = True  # 5-second real-time bars
    watchdog_s: float = 60.0
    restore_s: float = 120.0
    max_backoff_s: float = 60.0
    max_gap_s: int = 6 * 3600

    def timing(self) -> Timing:
        """The reconnect loop's timing for these options."""
        return Timing(watchdog_s=self.watchdog_s, initial_backoff_s=min(1.0, self.max_backoff_s),
                      max_backoff_s=self.max_backoff_s)  # fmt: skip


@dataclass
class IbkrStats(LiveStats):
    failed_requests: int = 0  # subscriptions TWS refused (the others go on)


@dataclass(eq=False)
class Connection:
    """One connection to TWS, and what it said that ends serving it."""

    ib: IB
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lost: bool = False
    data_lost_since: datetime | None = None  # 1101: TWS's link to IB is back, its data lost

    def on_disconnected(self) -> None:
        self.lost = True
        self.changed.set()


def what_to_show(contract: Contract) -> str:
    """Forex has no trades at IB: its bars are of midpoints."""
    return "MIDPOINT" if contract.secType == "CASH" else "TRADES"


def _bar_floor(moment: datetime) -> datetime:
    """The opening of the 5-second bar that holds ``moment``."""
    return moment - timedelta(seconds=moment.timestamp() % BAR_S)


class IbkrLive:
    """The IB hooks of the reconnect loop (:class:`producers.reconnect.Venue`)."""

    def __init__(
        self, settings: Settings, specs: Sequence[Spec], publisher: Publisher,
        options: LiveOptions | None = None, *,
        connect: Callable[[Settings, int], Awaitable[IB]] = session.connect,
        stats: IbkrStats | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.specs = list(specs)
        self.publisher = publisher
        self.options = options or LiveOptions()
        self.connect = connect
        self.stats = stats or IbkrStats(VENUE, watchdog_s=self.options.watchdog_s)
        self.contracts: dict[Spec, Contract] = {}
        self.rejected: dict[Spec, str] = {}
        self._ids = normalise.TickIds()
        self._routes: dict[int, tuple[str, str]] = {}  # reqId → (record symbol, what it is)
        self._bar_lists: dict[int, RealTimeBarList] = {}
        self._records: list[Tick | Bar] = []
        self._dead: list[tuple[bytes, str]] = []
        self._wake = asyncio.Event()
        self._held_since: float | None = None  # 1100 in effect since (monotonic)
        self._held_at: datetime | None = None  # … and since when in wall time
        self._last_bar: dict[str, datetime] = {}
        self._connection: Connection | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._closing = False
        self._server_version = 0  # negotiated on connect: which layouts the frames have

    @property
    def subscriptions(self) -> list[tuple[str, str]]:
        """The live subscriptions: (record symbol, AllLast / Last / BidAsk / bars)."""
        return sorted(self._routes.values())

    # Hooks of the reconnect loop -----------------------------------------------------------------

    async def open(self) -> Connection:
        """Connect, qualify what is not yet qualified, subscribe everything. Raises a
        non-retriable :class:`MarketDataError` when no instrument can be subscribed."""
        ib = await self.connect(self.settings, self.settings.ibkr_client_id)
        connection = self._connection = Connection(ib)
        self._server_version = ib.client.serverVersion()
        try:
            ib.disconnectedEvent += connection.on_disconnected
            ib.errorEvent += self._on_error
            ib.updateEvent += self.stats.heard  # after every read from the socket
            decoder = ib.client.decoder
            decoder.handlers[normalise.TICK_BY_TICK] = self._on_tick
            decoder.handlers[normalise.REALTIME_BAR] = self._on_bar
            self._release()  # what a lost session held back under 1100
            if self._pump_task is None or self._pump_task.done():
                self._pump_task = asyncio.create_task(self._pump())
            await self._qualify(ib)
            self._routes.clear()  # a new connection has no subscriptions yet
            self._bar_lists.clear()
            self._subscribe(ib)
        except BaseException:
            ib.disconnect()
            raise
        return connection

    async def serve(self, session: Connection, until: asyncio.Event) -> Ended:
        """Messages are handled as ib_async's decoder reads them; this waits for what ends the
        session: the connection lost, 1101 (resubscribe), 1100 unrestored for ``restore_s``."""
        restore_s = self.options.restore_s
        while True:
            if until.is_set():
                return Ended("stopped")
            if session.lost:
                return Ended("lost", "connection to TWS lost", self._held_at)
            if session.data_lost_since is not None:
                since, session.data_lost_since = session.data_lost_since, None
                return Ended("resubscribe", "TWS 1101: link to IB restored, data lost", since)
            pump = self._pump_task
            if pump is not None and pump.done() and not pump.cancelled():
                pump.result()  # publishing failed: its error ends the session
            held = None if self._held_since is None else time.monotonic() - self._held_since
            if held is not None and held > restore_s:
                why = f"TWS reported no restored link to IB within {restore_s:.0f} s"
                return Ended("lost", why, self._held_at)  # the data stopped at the 1100
            session.changed.clear()
            await _either(until, session.changed, min(1.0, restore_s - (held or 0.0)))

    async def probe(self, session: Connection) -> bool:
        await session.ib.reqCurrentTimeAsync()
        return True

    async def resubscribe(self, session: Connection) -> None:
        """Renew every subscription; ib_async cancels nothing on its own after 1101."""
        self._cancel(session.ib)
        self._subscribe(session.ib)

    async def fill_gap(self, session: Connection, since: datetime) -> None:
        """Fetch each instrument's 5-second bars missed since its newest bar (since ``since``
        when none came yet); without bars, nothing can be fetched again."""
        symbols = [(contract, record_symbol(contract)) for contract in self.contracts.values()]
        if not self.options.bars:
            for _, symbol in symbols:
                self.stats.gap_unfilled(symbol)
            return
        now = datetime.now(UTC)
        end = _bar_floor(now.replace(microsecond=0))
        oldest = end - timedelta(seconds=self.options.max_gap_s)
        client = HistoryClient(session.ib)
        for contract, symbol in symbols:
            newest = self._last_bar.get(symbol)
            start = newest + timedelta(seconds=BAR_S) if newest else _bar_floor(since)
            whole = start >= oldest
            if not whole:
                log.warning("%s: gap since %s is longer than %d s; filling its newest part only",
                            symbol, start.isoformat(), self.options.max_gap_s)  # fmt: skip
                start = oldest
            count = await self._fill(client, contract, symbol, start, end)
            if count is None or not whole:
                self.stats.gap_unfilled(symbol)
            else:
                self.stats.gap_filled(symbol, count)
        log.info("gap since %s filled up to %s: %d bars so far", since.isoformat(),
                 end.isoformat(), self.stats.gap_records)  # fmt: skip

    async def close(self, session: Connection) -> None:
        session.ib.disconnect()

    async def finish(self) -> None:
        """Publish what is left (held back or not) and wait for its delivery."""
        self._closing = True
        self._wake.set()
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        await self._pump_task

    # One connection ---------------------------------------------------------------------------

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
        for contract in good.values():
            self.stats.instrument(record_symbol(contract))

    def _subscribe(self, ib: IB) -> None:
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

    async def _fill(
        self, client: HistoryClient, contract: Contract, symbol: str, start: datetime,
        end: datetime,
    ) -> int | None:  # fmt: skip
        """One instrument's bars of ``[start, end)``: how many, None when IB refused them. A
        connection lost meanwhile raises: the gap stays marked for the next session."""
        count = 0
        try:
            request = Request(contract, "5s", what_to_show(contract))
            async for page in client.pages(request, start, end, lambda: datetime.now(UTC)):
                self._records.extend(page.bars)
                self._dead += [(repr(row).encode(), why) for row, why in page.rejected]
                count += len(page.bars)
                for bar in page.bars:
                    self._newest(symbol, bar.timestamp)
                self._wake.set()
        except MarketDataError as exc:
            if exc.retriable and not client.ib.isConnected():
                raise
            log.error("could not fill the gap of %s: %s", symbol, exc)
            return None
        return count

    def _newest(self, symbol: str, opened: datetime) -> None:
        """A bar of ``symbol`` that opened at ``opened`` was received (live or from history)."""
        self._last_bar[symbol] = max(opened, self._last_bar.get(symbol, opened))

    def _release(self) -> None:
        """Records held back under 1100 go out."""
        self._held_since = self._held_at = None
        self._wake.set()

    # Messages (called by ib_async's decoder, in the event loop) --------------------------------

    def _on_tick(self, fields: list[str]) -> None:
        self._take(fields, 1, lambda symbol: normalise.tick_by_tick(
            fields, symbol, datetime.now(UTC), self._ids))  # fmt: skip

    def _on_bar(self, fields: list[str]) -> None:
        def bars(symbol: str) -> list[Bar]:
            bar = normalise.realtime_bar(fields, symbol)
            self._newest(symbol, bar.timestamp)
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
                normalise.check_layout(fields, self._server_version)
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
            if self._held_since is None:
                self._held_since, self._held_at = time.monotonic(), datetime.now(UTC)
        elif code in (session.RESTORED_DATA_KEPT, session.RESTORED_DATA_LOST):
            since = self._held_at or datetime.now(UTC)
            self._release()
            if code == session.RESTORED_DATA_LOST and self._connection is not None:
                self._connection.data_lost_since = since
                self._connection.changed.set()
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
                self.stats.seen(records)
                await self.publisher.add(records)
            dead, self._dead = self._dead, []
            for raw, reason in dead:
                self.stats.malformed += 1
                log.warning("malformed IB message dead-lettered: %s", reason)
                await self.publisher.dead(raw, reason, "ibkr.live")
            if self._closing and not self._records:
                await self.publisher.flush(wait=True)
                return


async def _either(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    """Wait until either event is set, or ``seconds``."""
    waiters = [asyncio.ensure_future(event.wait()) for event in (first, second)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
