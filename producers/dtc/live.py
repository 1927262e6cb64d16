"""`mdp produce dtc`: live trades and best bid/ask from a DTC server into the raw topics.

One supervisor keeps one connection: it logs on, subscribes every instrument
(``MARKET_DATA_REQUEST``, one ``SymbolID`` each, the same ids on every connection), and turns
what arrives into ticks. A connection that closes, sends garbage, says ``LOGOFF``, or stays
silent for ``timeout_s`` (no heartbeat nor anything else) is replaced after a capped
exponential backoff with jitter, and every instrument is subscribed again. A ``LOGOFF`` with
``DoNotReconnect`` ends the run with the server's reason. A ``MARKET_DATA_REJECT`` is logged
with the server's text and kept in :attr:`LiveStats.rejects`; the other instruments go on.
Every message that does not decode or normalise goes to the dead letters with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Tick
from marketdata.stopping import until_stopped
from producers.dtc import messages as m
from producers.dtc import normalise
from producers.dtc.codec import DtcDecodeError, DtcFramingError, Message, UnhandledMessageType
from producers.dtc.normalise import Instrument, Occurrences
from producers.dtc.session import DtcConnectionLost, DtcSession, Endpoint, logged_off
from producers.publisher import Publisher

log = logging.getLogger(__name__)
ORIGIN = "dtc.live"

Normaliser = Callable[[Message, Instrument, datetime, Occurrences], Tick | list[Tick]]
_NORMALISERS: dict[int, Normaliser] = {
    m.MARKET_DATA_UPDATE_TRADE: normalise.trade,
    m.MARKET_DATA_UPDATE_TRADE_COMPACT: normalise.trade_compact,
    m.MARKET_DATA_UPDATE_BID_ASK: normalise.bid_ask,
    m.MARKET_DATA_UPDATE_BID_ASK_COMPACT: lambda msg, ins, at, occ: normalise.bid_ask(
        msg, ins, at, occ, single=True
    ),
    m.MARKET_DATA_SNAPSHOT: normalise.snapshot,
}


@dataclass
class LiveStats:
    messages: int = 0
    records: int = 0
    malformed: int = 0
    ignored: int = 0
    connections: int = 0
    reconnects: int = 0
    subscriptions: int = 0
    rejects: dict[str, str] = field(default_factory=dict)
    feed_available: bool | None = None
    last_error: str = ""


class DtcLive:
    """``await start()`` runs the supervisor in a task, ``await aclose()`` stops it and waits
    for what was published to be acknowledged; or ``await run(stop)`` in a task of one's own."""

    def __init__(
        self, endpoint: Endpoint, instruments: Sequence[Instrument], publisher: Publisher, *,
        timeout_s: float | None = None, max_backoff_s: float = 30.0, linger_s: float = 0.005,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.instruments = dict(enumerate(instruments, 1))
        self.publisher = publisher
        # Two missed heartbeats and a little: one late heartbeat is no reason to reconnect.
        self.timeout_s = timeout_s or endpoint.heartbeat_s * 2.5
        self.linger_s = linger_s
        self.backoff = Backoff(initial=0.5, maximum=max_backoff_s)
        self.stats = LiveStats()
        self._occurrences = Occurrences()
        self._unflushed = False
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
        try:
            while not stop.is_set():
                session = await self._connect(stop)
                if session is None:
                    return
                reason = None
                try:
                    _, reason = await until_stopped(self._pump(session), stop)
                finally:
                    await session.aclose(reason="client stopping" if reason is None else reason)
                if reason is None:
                    return
                self.stats.reconnects += 1
                self.stats.last_error = reason
                delay = self.backoff.next_delay()
                log.warning("DTC connection lost (%s); reconnecting in %.1fs", reason, delay)
                await wait_or_stop(stop, delay)
        finally:
            await self.publisher.flush(wait=True)

    async def _connect(self, stop: asyncio.Event) -> DtcSession | None:
        while not stop.is_set():
            session = DtcSession(self.endpoint)
            try:
                _, started = await until_stopped(self._open(session), stop)
            except MarketDataError as exc:
                await session.aclose(logoff=False)
                if not exc.retriable:
                    raise
                self.stats.last_error = str(exc)
                delay = self.backoff.next_delay()
                log.warning("%s; retry in %.1fs", exc, delay)
                await wait_or_stop(stop, delay)
                continue
            if started is None:
                await session.aclose(logoff=False)
                return None
            return session
        return None

    async def _open(self, session: DtcSession) -> str:
        await session.start()
        self.stats.connections += 1
        # A replay of a trade after a reconnect must get the id it had the first time.
        self._occurrences.reset()
        await self._subscribe(session)
        return "open"

    async def _subscribe(self, session: DtcSession) -> None:
        for number, instrument in self.instruments.items():
            await session.send({
                "Type": m.MARKET_DATA_REQUEST, "RequestAction": m.SUBSCRIBE, "SymbolID": number,
                "Symbol": instrument.symbol, "Exchange": instrument.exchange,
            })  # fmt: skip
            self.stats.subscriptions += 1
        log.info("subscribed to %s on %s", ", ".join(map(str, self.instruments.values())),
                 session.endpoint)  # fmt: skip

    async def _pump(self, session: DtcSession) -> str:
        """Handle messages until the connection must be replaced; say why."""
        while True:
            silent_for = time.monotonic() - session.last_received
            if silent_for > self.timeout_s:
                return f"no message from the server for {silent_for:.1f}s"
            wait = self.linger_s if self._unflushed else self.timeout_s - silent_for
            try:
                async with asyncio.timeout(max(wait, 0.001)):
                    frames = await session.read_frames()
            except TimeoutError:
                await self._flush()
                continue
            except DtcConnectionLost as exc:
                if session.framer.pending:  # a message cut off by the close: kept, not lost
                    why = f"truncated DTC message when the connection closed: {exc}"
                    await self._dead(session.framer.rest(), why)
                return str(exc)
            except DtcFramingError as exc:
                # The frames before the garbage were handled; the rest of the buffer cannot be
                # cut into messages (binary DTC has no sync marker): kept as it came.
                await self._dead(session.framer.rest(), str(exc))
                log.error("%s; dropping the connection", exc)
                return str(exc)
            received_at = datetime.now(UTC)
            for frame in frames:
                reason = await self._handle(session, frame, received_at)
                if reason is not None:
                    return reason
            if time.monotonic() - self.publisher.last_flush >= self.linger_s:
                await self._flush()

    async def _flush(self) -> None:
        if self._unflushed:
            await self.publisher.flush()
            self._unflushed = False

    async def _dead(self, frame: bytes, reason: str) -> None:
        self.stats.malformed += 1
        log.debug("dead letter: %s", reason)
        await self.publisher.dead(frame, reason, ORIGIN)

    async def _handle(self, session: DtcSession, frame: bytes, received_at: datetime) -> str | None:
        self.stats.messages += 1
        try:
            message = session.decode(frame)
        except UnhandledMessageType:
            self.stats.ignored += 1
            return None
        except DtcDecodeError as exc:
            await self._dead(frame, f"undecodable DTC message: {exc}")
            return None
        type_ = message["Type"]
        normaliser = _NORMALISERS.get(type_)
        if normaliser is not None:
            await self._market_data(normaliser, message, frame, received_at)
        elif type_ == m.HEARTBEAT:
            pass  # liveness only: last_received moved when its bytes arrived
        elif type_ == m.MARKET_DATA_REJECT:
            self._reject(message)
        elif type_ == m.MARKET_DATA_FEED_STATUS:
            await self._feed_status(session, message)
        elif type_ == m.LOGOFF:
            error = logged_off(message)
            if not error.retriable:
                raise error
            return str(error)
        else:
            self.stats.ignored += 1
        return None

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
            self.backoff.reset()
            self.stats.records += len(records)
            self._unflushed = True
            await self.publisher.add(records)

    def _reject(self, message: Message) -> None:
        instrument = self.instruments.get(message["SymbolID"])
        name = str(instrument) if instrument else f"SymbolID {message['SymbolID']}"
        text = message["RejectText"] or "no reason given"
        self.stats.rejects[name] = text
        log.error("DTC server rejected market data for %s: %s", name, text)

    async def _feed_status(self, session: DtcSession, message: Message) -> None:
        available = message["Status"] == m.FEED_AVAILABLE
        was = self.stats.feed_available
        self.stats.feed_available = available
        log.warning("DTC market data feed %s", "available" if available else "unavailable")
        if (
            available
            and was is False
            and session.logon.get("ResubscribeWhenMarketDataFeedAvailable")
        ):
            await self._subscribe(session)
