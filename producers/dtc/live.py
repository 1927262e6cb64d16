"""`mdp produce dtc`: live trades and best bid/ask from a DTC server into the raw topics.

The shared :class:`~producers.reconnect.ReconnectLoop` keeps one connection; this module gives
it the DTC hooks. ``open`` logs on and subscribes every instrument (``MARKET_DATA_REQUEST``, one
``SymbolID`` each, the same ids on every connection); ``serve`` turns what arrives into ticks
until the connection closes, sends garbage or says ``LOGOFF``. The server's heartbeats keep the
loop's watchdog quiet: silence for ``watchdog_s`` (two missed heartbeats and a little) replaces
the connection, since DTC has nothing to probe with. A ``LOGOFF`` with ``DoNotReconnect`` ends
the run with the server's reason. A ``MARKET_DATA_FEED_STATUS`` saying the feed is back, from a
server that asked for it (``ResubscribeWhenMarketDataFeedAvailable``), renews every subscription
on the same connection. A ``MARKET_DATA_REJECT`` is logged with the server's text and kept in
:attr:`DtcStats.rejects`; the other instruments go on. Every message that does not decode or
normalise goes to the dead letters with the reason.

After a reconnect (or a feed back from an outage) the gap is filled from the historical port,
when one is given: each instrument's trades since the gap began (``interval`` tick, from the
whole second before it), which get the ids they get live, so the trades also received live are
deduplicated downstream. An instrument whose history cannot be had (no historical port, a
reject, a failure) is counted as a gap left unfilled and logged; ``mdp backfill dtc --interval
tick --resume`` fetches its trades later. Live messages wait in the socket meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Tick
from marketdata.stopping import until_stopped
from producers.dtc import messages as m
from producers.dtc import normalise
from producers.dtc.codec import DtcDecodeError, DtcFramingError, Message, UnhandledMessageType
from producers.dtc.history import HistoryRequest, fetch
from producers.dtc.normalise import Instrument, Occurrences
from producers.dtc.session import DtcConnectionLost, DtcSession, Endpoint, logged_off
from producers.feed import LiveStats
from producers.publisher import Publisher
from producers.reconnect import Ended, ReconnectLoop, Timing

log = logging.getLogger(__name__)
ORIGIN = "dtc.live"
GAP_ORIGIN = "dtc.history"
VENUE = "dtc"

Normaliser = Callable[[Message, Instrument, datetime, Occurrences], Tick | list[Tick]]
_NORMALISERS: dict[int, Normaliser] = {
    m.MARKET_DATA_UPDATE_TRADE: normalise.trade,
    m.MARKET_DATA_UPDATE_TRADE_COMPACT: normalise.trade_compact,
    m.MARKET_DATA_UPDATE_BID_ASK: normalise.bid_ask,
    m.MARKET_DATA_UPDATE_BID_ASK_COMPACT: lambda msg, ins, at, occ: normalise.bid_ask(
        msg, ins, at, occ, single=True
    ),
    m.MARKET_DATA_SNAPSHOT: normalise.snapshot,
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2: normalise.trade_unbundled,
    m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS: normalise.bid_ask_us,
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR: normalise.trade_unbundled_ms,
    m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP: normalise.trade_no_timestamp,
    m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP: normalise.bid_ask_no_timestamp,
    m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT: normalise.last_trade_snapshot,
}


@dataclass
class DtcStats(LiveStats):
    """The shared feed counts, and what only DTC has."""

    subscriptions: int = 0
    rejects: dict[str, str] = field(default_factory=dict)  # instrument -> the server's text
    feed_available: bool | None = None

    @classmethod
    def watching(
        cls, instruments: Sequence[Instrument], endpoint: Endpoint, watchdog_s: float | None = None
    ) -> DtcStats:
        """The stats of a feed of ``instruments`` whose watchdog waits ``watchdog_s``: by
        default two missed heartbeats and a little (one late heartbeat is no reason to
        reconnect)."""
        symbols = [instrument.symbol for instrument in instruments]
        return cls.of(VENUE, symbols, watchdog_s=watchdog_s or endpoint.heartbeat_s * 2.5)


class DtcLive:
    """``await start()`` runs the reconnect loop in a task, ``await aclose()`` stops it and
    waits for what was published to be acknowledged; or ``await run(stop)`` in a task of one's
    own. ``stats`` are the feed's counts when made beforehand (for ``/health``); their
    ``watchdog_s`` is the watchdog's. ``history``: the historical port that fills gaps."""

    def __init__(
        self, endpoint: Endpoint, instruments: Sequence[Instrument], publisher: Publisher, *,
        stats: DtcStats | None = None, history: Endpoint | None = None,
        max_backoff_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.history = history
        self.instruments = dict(enumerate(instruments, 1))
        self.publisher = publisher
        self.stats = stats or DtcStats.watching(instruments, endpoint)
        self.timing = Timing(watchdog_s=self.stats.watchdog_s, max_backoff_s=max_backoff_s)
        self._occurrences = Occurrences()
        self._ignored_types: set[int] = set()
        self._fetched = 0  # records of the instrument whose gap is being filled
        self._unavailable_since: datetime | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name="dtc-live")

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def run(self, stop: asyncio.Event) -> None:
        await ReconnectLoop[DtcSession](self, self.timing).run(stop)

    # The loop's hooks ------------------------------------------------------------------------

    async def open(self) -> DtcSession:
        session = DtcSession(self.endpoint)
        try:
            await session.start()
            # A replay of a trade after a reconnect must get the id it had the first time.
            self._occurrences.reset()
            self._unavailable_since = None
            await self._subscribe(session)
        except BaseException:
            await session.aclose(logoff=False)
            raise
        return session

    async def serve(self, session: DtcSession, until: asyncio.Event) -> Ended:
        served, ended = await until_stopped(self._pump(session), until)
        return ended if served and ended is not None else Ended("stopped")

    async def probe(self, session: DtcSession) -> bool:
        return False  # DTC has no request that every server answers; heartbeats were the probe

    async def resubscribe(self, session: DtcSession) -> None:
        await self._subscribe(session)

    async def fill_gap(self, session: DtcSession, since: datetime) -> None:
        unfilled: dict[str, str] = {}
        # A historical port that cannot be reached fails every instrument alike: asked once.
        away = None if self.history else "no historical port"
        for instrument in self.instruments.values():
            why, self._fetched = away, 0
            try:
                if self.history is not None and why is None:
                    await self._fill(self.history, instrument, since)
            except (DtcConnectionLost, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                away = away if self._fetched else why  # a stream cut midway is its own
            except MarketDataError as exc:  # a reject, garbage: this instrument's alone
                why = str(exc)
            if why is not None:
                self.stats.gap_unfilled(instrument.symbol, self._fetched)
                unfilled[str(instrument)] = why
        await self.publisher.flush()
        if unfilled:
            reasons = "; ".join(f"{name}: {why}" for name, why in unfilled.items())
            log.warning("DTC: trades since %s not fetched again (%s); `mdp backfill dtc "
                        "--interval tick --resume` fetches them",
                        since.isoformat(timespec="seconds"), reasons)  # fmt: skip

    async def _fill(self, history: Endpoint, instrument: Instrument, since: datetime) -> None:
        """Publish ``instrument``'s trades since ``since`` from the historical port."""
        request = HistoryRequest(instrument, "tick", since)
        async for page in fetch(history, request, timeout_s=self.timing.watchdog_s):
            for frame, reason in page.rejected:
                await self._dead(frame, reason, GAP_ORIGIN)
            await self.publisher.add(page.records)
            self._fetched += len(page.records)
        self.stats.gap_filled(instrument.symbol, self._fetched)

    async def close(self, session: DtcSession) -> None:
        await session.aclose()

    async def finish(self) -> None:
        await self.publisher.flush(wait=True)

    # Serving ---------------------------------------------------------------------------------

    async def _subscribe(self, session: DtcSession) -> None:
        for number, instrument in self.instruments.items():
            await session.send({
                "Type": m.MARKET_DATA_REQUEST, "RequestAction": m.SUBSCRIBE, "SymbolID": number,
                "Symbol": instrument.symbol, "Exchange": instrument.exchange,
            })  # fmt: skip
            self.stats.subscriptions += 1
        log.info("subscribed to %s on %s", ", ".join(map(str, self.instruments.values())),
                 session.endpoint)  # fmt: skip

    async def _pump(self, session: DtcSession) -> Ended:
        """Handle messages until the connection must be replaced; say why."""
        while True:
            try:
                # The read waits for the venue as long as it takes (the loop's watchdog judges
                # silence; the publisher sends by itself, with no flush timer to serve).
                frames = await session.read_frames()
            except DtcConnectionLost as exc:
                if session.framer.pending:  # a message cut off by the close: kept, not lost
                    why = f"truncated DTC message when the connection closed: {exc}"
                    await self._dead(session.framer.rest(), why)
                return self._lost(str(exc))
            except DtcFramingError as exc:
                # The frames before the garbage were handled; the rest of the buffer cannot be
                # cut into messages (binary DTC has no sync marker): kept as it came.
                await self._dead(session.framer.rest(), str(exc))
                log.error("%s; dropping the connection", exc)
                return self._lost(str(exc))
            self.stats.heard()
            received_at = datetime.now(UTC)
            for frame in frames:
                ended = await self._handle(session, frame, received_at)
                if ended is not None:
                    return ended

    def _lost(self, reason: str) -> Ended:
        # Lost while the server's feed was away: the data stopped when the feed did.
        return Ended("lost", reason, self._unavailable_since)

    async def _dead(self, frame: bytes, reason: str, origin: str = ORIGIN) -> None:
        self.stats.malformed += 1
        log.debug("dead letter: %s", reason)
        await self.publisher.dead(frame, reason, origin)

    async def _handle(
        self, session: DtcSession, frame: bytes, received_at: datetime
    ) -> Ended | None:
        self.stats.messages += 1
        try:
            message = session.decode(frame)
        except UnhandledMessageType as exc:
            self._ignore(exc.type)
            return None
        except DtcDecodeError as exc:
            await self._dead(frame, f"undecodable DTC message: {exc}")
            return None
        type_ = message["Type"]
        normaliser = _NORMALISERS.get(type_)
        if normaliser is not None:
            await self._market_data(normaliser, message, frame, received_at)
        elif type_ == m.HEARTBEAT:
            pass  # liveness only: heard when its bytes arrived
        elif type_ == m.MARKET_DATA_REJECT:
            self._reject(message)
        elif type_ == m.MARKET_DATA_FEED_STATUS:
            return self._feed_status(session, message)
        elif type_ == m.LOGOFF:
            error = logged_off(message)
            if not error.retriable:
                raise error
            return self._lost(str(error))
        else:
            self._ignore(type_)
        return None

    def _ignore(self, type_: int) -> None:
        """Counted every time, logged the first time per type: never dropped unseen."""
        self.stats.ignored += 1
        if type_ not in self._ignored_types:
            self._ignored_types.add(type_)
            log.warning("DTC message type %d (%s) is not handled by this producer: skipped and "
                        "counted (logged once per type)", type_, m.name_of(type_))  # fmt: skip

    async def _market_data(
        self, normaliser: Normaliser, message: Message, frame: bytes, received_at: datetime
    ) -> None:
        instrument = self.instruments.get(message["SymbolID"])
        if instrument is None:
            await self._dead(frame, f"DTC market data for unknown SymbolID {message['SymbolID']}")
            return
        try:
            result = normaliser(message, instrument, received_at, self._occurrences)
        except InvalidRecord as exc:
            await self._dead(frame, f"malformed DTC {m.NAMES[message['Type']]}: {exc}")
            return
        except Exception as exc:  # a normaliser's bug must not end the stream: logged, kept
            log.exception("DTC normaliser failed on a %s", m.NAMES[message["Type"]])
            await self._dead(frame, f"DTC {m.NAMES[message['Type']]} not normalised: "
                                    f"{type(exc).__name__}: {exc}")  # fmt: skip
            return
        records = result if isinstance(result, list) else [result]
        if records:
            self.stats.seen(records)
            await self.publisher.add(records)

    def _reject(self, message: Message) -> None:
        instrument = self.instruments.get(message["SymbolID"])
        name = str(instrument) if instrument else f"SymbolID {message['SymbolID']}"
        text = message["RejectText"] or "no reason given"
        self.stats.rejects[name] = text
        log.error("DTC server rejected market data for %s: %s", name, text)

    def _feed_status(self, session: DtcSession, message: Message) -> Ended | None:
        """The server's market data feed went away or came back; on its way back, every
        subscription is renewed when the server asked for that."""
        available = message["Status"] == m.FEED_AVAILABLE
        was = self.stats.feed_available
        self.stats.feed_available = available
        log.warning("DTC market data feed %s", "available" if available else "unavailable")
        if not available:
            self._unavailable_since = self._unavailable_since or datetime.now(UTC)
            return None
        since, self._unavailable_since = self._unavailable_since, None
        if was is False and session.logon.get("ResubscribeWhenMarketDataFeedAvailable"):
            return Ended("resubscribe", "the market data feed is available again", since)
        return None
