"""A DTC server on loopback, speaking the protocol at the byte level in both encodings.

Two ports, as Sierra Chart has: market data (logon, heartbeats, ``MARKET_DATA_REQUEST`` →
snapshot, then whatever the test pushes) and historical data (one request per connection:
bars from a deterministic series, trades from ``sandbox/fixtures/dtc``, zlib-compressed when the
request asks and ``compress`` allows). It encodes and decodes with the client's own message
specs (``producers.dtc.messages``), so the two agree by construction; the byte layout itself is
pinned by the unit tests against the C header.

Faults on demand: ``drop_connections``, ``heartbeats = False`` (silence, connection open),
``rejects`` (a symbol's ``MARKET_DATA_REJECT`` text), ``send_short`` / ``send_oversized`` /
``send_unknown_type`` / ``send_raw`` / ``send_around`` (garbage in the same write as a
message), ``logoff``, ``history_busy`` (reject with a retry time),
``history_cut_after`` (close the connection after that many records, and ``history_garbage``
written in the same write as the last of them, uncompressed), ``history_final_flag = False``
(no record says it is the last) and ``history_tail`` (a test's own bytes after the records,
such as a ``HISTORICAL_PRICE_DATA_RESPONSE_TRAILER`` built from the header by hand), or
``history_records`` (a test's own record bytes instead of the series).

    python -m sandbox.dtc --port 18099 --historical-port 18098 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import producers.dtc.messages as m
from producers.dtc.codec import BINARY, CODECS, Codec, DtcError, Framer, encode_binary
from sandbox import FIXTURES as RECORDINGS

FIXTURES: Final = RECORDINGS / "dtc"
SYMBOLS: Final = ("ESZ4", "NQZ4", "CLZ4")
log = logging.getLogger("fake-dtc")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def fixture_trades(symbol: str = "ESZ4") -> list[dict[str, Any]]:
    trades: list[dict[str, Any]] = fixture(f"{symbol}_trades.json")["trades"]
    return trades


def bar_record(symbol: str, interval_s: int, start_s: int) -> dict[str, Any]:
    """The bar opening at ``start_s``, the same every time (prices on a 0.25 tick)."""
    rng = random.Random(f"{symbol}/{interval_s}/{start_s}")
    base = 5000 + (start_s // interval_s) % 400
    o, c = base + rng.randint(0, 40) / 4, base + rng.randint(0, 40) / 4
    high, low = max(o, c) + rng.randint(0, 8) / 4, min(o, c) - rng.randint(0, 8) / 4
    return {"Type": m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE, "StartDateTime": start_s,
            "OpenPrice": o, "HighPrice": high, "LowPrice": low, "LastPrice": c,
            "Volume": float(rng.randint(1, 5000)), "NumTrades": rng.randint(1, 900),
            "BidVolume": 0.0, "AskVolume": 0.0}  # fmt: skip


@dataclass(eq=False)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    codec: Codec = BINARY
    framer: Framer = field(default_factory=BINARY.framer)
    subscriptions: dict[str, int] = field(default_factory=dict)  # symbol -> SymbolID
    heartbeat_s: float = 10.0
    beats: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.write(self.codec.encode(message))

    async def write(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.writer.write(data)
            await self.writer.drain()


@dataclass
class FakeDtc:
    """Start with :meth:`start`; ``port`` and ``historical_port`` are then the ports to use."""

    port: int = 0
    historical_port: int = 0
    # 127.0.0.1; 0.0.0.0 in a container, where the producers connect from other containers
    host: str = "127.0.0.1"
    symbols: tuple[str, ...] = SYMBOLS
    password: str | None = None  # when set, a logon with another password is refused
    heartbeat_s: float | None = None  # None: the interval the client asks for
    heartbeats: bool = True
    compress: bool = True
    now_s: int | None = None  # the historical server's clock; None follows the real one
    rejects: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    history_busy: int = 0  # reject this many historical requests with "retry in 1 s"
    history_cut_after: int | None = None
    history_garbage: bytes = b""  # written after the records of a cut history stream
    # False: no record says IsFinalRecord (a server that ends with the trailer alone)
    history_final_flag: bool = True
    history_tail: bytes = b""  # raw bytes after the records, in the zlib stream if compressed
    # a test's own record bytes (packed by hand from the header) served instead of the series
    history_records: bytes | None = None
    # 1_000_000: bar times as the current header's t_DateTimeWithMicrosecondsInt, not seconds
    history_time_scale: int = 1
    protocol_version: int = m.PROTOCOL_VERSION  # said in ENCODING_RESPONSE and LOGON_RESPONSE
    logon_protocol_version: int | None = None  # another in LOGON_RESPONSE alone
    logons: int = 0
    subscriptions: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    history_requests: list[dict[str, Any]] = field(default_factory=list)
    _live: set[Connection] = field(default_factory=set)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        live = await asyncio.start_server(self._serve_live, self.host, self.port)
        history = await asyncio.start_server(self._serve_history, self.host,
                                             self.historical_port)  # fmt: skip
        self._servers = [live, history]
        self.port = live.sockets[0].getsockname()[1]
        self.historical_port = history.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        for server in self._servers:
            server.close()
        await self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    @property
    def connections(self) -> int:
        return len(self._live)

    # Pushing market data -------------------------------------------------------------------

    async def push(self, symbol: str, message: dict[str, Any]) -> int:
        """Send ``message`` to every connection subscribed to ``symbol``, with its SymbolID;
        return how many got it."""
        sent = 0
        for conn in list(self._live):
            if symbol in conn.subscriptions:
                await conn.send({**message, "SymbolID": conn.subscriptions[symbol]})
                sent += 1
        return sent

    async def trade(self, symbol: str, trade: dict[str, Any]) -> int:
        return await self.push(symbol, {"Type": m.MARKET_DATA_UPDATE_TRADE, **trade})

    async def send_raw(self, data: bytes) -> None:
        for conn in list(self._live):
            await conn.write(data)

    async def send_around(
        self, symbol: str, message: dict[str, Any], before: bytes = b"", after: bytes = b""
    ) -> None:
        """``message`` (encoded as the connection speaks) with ``before`` and ``after`` around
        it, in one write: garbage in the same read as a valid message."""
        for conn in list(self._live):
            if symbol in conn.subscriptions:
                body = conn.codec.encode({**message, "SymbolID": conn.subscriptions[symbol]})
                await conn.write(before + body + after)

    async def send_short(self, symbol: str, message: dict[str, Any], size: int) -> None:
        """A binary message cut to ``size`` bytes, its Size saying so: an older sender."""
        for conn in list(self._live):
            if symbol in conn.subscriptions:
                full = encode_binary({**message, "SymbolID": conn.subscriptions[symbol]})
                await conn.write(struct.pack("<H", size) + full[2:size])

    async def send_oversized(self, size: int = 60_000) -> None:
        """A header claiming ``size`` bytes, beyond any sane message, and a little garbage."""
        await self.send_raw(struct.pack("<HH", size, m.MARKET_DATA_UPDATE_TRADE) + b"\xab" * 64)

    async def send_unknown_type(self, type_: int = 9999) -> None:
        for conn in list(self._live):
            data = (struct.pack("<HHI", 8, type_, 7) if conn.codec is BINARY
                    else json.dumps({"Type": type_, "X": 7}).encode() + b"\0")  # fmt: skip
            await conn.write(data)

    async def logoff(self, reason: str, *, do_not_reconnect: bool = False) -> None:
        for conn in list(self._live):
            await conn.send({"Type": m.LOGOFF, "Reason": reason,
                             "DoNotReconnect": int(do_not_reconnect)})  # fmt: skip

    async def drop_connections(self) -> None:
        for conn in list(self._live):
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if conn.beats is not None:
            conn.beats.cancel()
        conn.writer.close()
        self._live.discard(conn)

    # Serving -------------------------------------------------------------------------------

    async def _serve_live(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve(Connection(reader, writer), live=True)

    async def _serve_history(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._serve(Connection(reader, writer), live=False)

    async def _serve(self, conn: Connection, *, live: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if live:
            self._live.add(conn)
        try:
            while not conn.writer.is_closing():
                frames = conn.framer.feed(b"", 1) if conn.framer.pending else []
                if not frames:
                    data = await conn.reader.read(65536)
                    if not data:
                        return
                    frames = conn.framer.feed(data, 1)
                for frame in frames:
                    try:
                        message = conn.codec.decode(frame)
                    except DtcError as exc:
                        log.warning("fake DTC: undecodable message from the client: %s", exc)
                        continue
                    self.received.append(message)
                    await self._on_message(conn, message, live=live)
        except (ConnectionError, DtcError):
            return
        finally:
            self._close(conn)
            self._tasks.discard(task)

    async def _on_message(self, conn: Connection, message: dict[str, Any], *, live: bool) -> None:
        type_ = message["Type"]
        if type_ == m.ENCODING_REQUEST:
            wanted = message["Encoding"]
            agreed = wanted if wanted in (m.BINARY_ENCODING, m.JSON_ENCODING) else 0
            answer = {"Type": m.ENCODING_RESPONSE, "Encoding": agreed,
                      "ProtocolVersion": self.protocol_version}  # fmt: skip
            await conn.write(encode_binary(answer))
            conn.codec = CODECS["json" if agreed == m.JSON_ENCODING else "binary"]
            rest, conn.framer = conn.framer.rest(), conn.codec.framer()
            conn.framer.feed(rest, 0)  # buffered, to be cut by the serving loop
        elif type_ == m.LOGON_REQUEST:
            await self._logon(conn, message, live=live)
        elif type_ == m.LOGOFF:
            self._close(conn)
        elif type_ == m.MARKET_DATA_REQUEST and live:
            await self._market_data_request(conn, message)
        elif type_ == m.HISTORICAL_PRICE_DATA_REQUEST and not live:
            await self._history(conn, message)

    async def _logon(self, conn: Connection, message: dict[str, Any], *, live: bool) -> None:
        if self.password is not None and message["Password"] != self.password:
            await conn.send({"Type": m.LOGON_RESPONSE, "Result": m.LOGON_ERROR,
                             "ResultText": "Invalid username or password."})  # fmt: skip
            return
        self.logons += 1
        await conn.send({
            "Type": m.LOGON_RESPONSE, "Result": m.LOGON_SUCCESS, "ResultText": "Logon OK",
            "ServerName": "fake DTC", "MarketDataSupported": int(live),
            "ProtocolVersion": self.logon_protocol_version or self.protocol_version,
            "HistoricalPriceDataSupported": int(not live),
            "OneHistoricalPriceDataRequestPerConnection": 1,
            "ResubscribeWhenMarketDataFeedAvailable": 1,
        })  # fmt: skip
        conn.heartbeat_s = self.heartbeat_s or max(message["HeartbeatIntervalInSeconds"], 1)
        conn.beats = asyncio.create_task(self._beat(conn))
        self._tasks.add(conn.beats)
        conn.beats.add_done_callback(self._tasks.discard)

    async def _beat(self, conn: Connection) -> None:
        while not conn.writer.is_closing():
            await asyncio.sleep(conn.heartbeat_s)
            if self.heartbeats:
                await conn.send({"Type": m.HEARTBEAT, "CurrentDateTime": int(time.time())})

    async def _market_data_request(self, conn: Connection, message: dict[str, Any]) -> None:
        symbol, symbol_id = message["Symbol"], message["SymbolID"]
        if message["RequestAction"] == m.UNSUBSCRIBE:
            conn.subscriptions.pop(symbol, None)
            return
        text = self.rejects.get(symbol)
        if text is None and symbol not in self.symbols:
            text = f"Symbol {symbol} is not available"
        if text is not None:
            await conn.send({"Type": m.MARKET_DATA_REJECT, "SymbolID": symbol_id,
                             "RejectText": text})  # fmt: skip
            return
        conn.subscriptions[symbol] = symbol_id
        self.subscriptions += 1
        if symbol in self.snapshots:
            await conn.send({**self.snapshots[symbol], "SymbolID": symbol_id})

    # History -------------------------------------------------------------------------------

    async def _history(self, conn: Connection, request: dict[str, Any]) -> None:
        self.history_requests.append(request)
        request_id, symbol = request["RequestID"], request["Symbol"]
        reject: dict[str, Any] | None = None
        if self.history_busy > 0:
            self.history_busy -= 1
            reject = {"RejectText": "Server busy, retry later", "RejectReasonCode": 1,
                      "RetryTimeInSeconds": 1}  # fmt: skip
        elif symbol not in self.symbols:
            reject = {"RejectText": f"Symbol {symbol} not found", "RejectReasonCode": 2}
        if reject is not None:
            await conn.send({"Type": m.HISTORICAL_PRICE_DATA_REJECT, "RequestID": request_id,
                             **reject})  # fmt: skip
            self._close(conn)
            return
        records = [{**r, "StartDateTime": r["StartDateTime"] * self.history_time_scale}
                   if "StartDateTime" in r else r for r in self._records(request)]  # fmt: skip
        if self.history_records is not None:
            records = []
        compress = bool(request["UseZLibCompression"]) and self.compress and conn.codec is BINARY
        await conn.send({
            "Type": m.HISTORICAL_PRICE_DATA_RESPONSE_HEADER, "RequestID": request_id,
            "RecordInterval": request["RecordInterval"], "UseZLibCompression": int(compress),
            "NoRecordsToReturn": int(not records and not self.history_records),
        })  # fmt: skip
        cut, self.history_cut_after = self.history_cut_after, None
        if cut is not None:  # the connection breaks before the final record
            records = records[:cut]
        elif self.history_final_flag:
            records[-1:] = [{**r, "IsFinalRecord": 1} for r in records[-1:]]
        body = [(encode_binary if compress else conn.codec.encode)({**r, "RequestID": request_id})
                for r in records]  # fmt: skip
        if self.history_records:
            body.append(self.history_records)
        if cut is None and self.history_tail:
            body.append(self.history_tail)
        if compress:
            await conn.write(zlib.compress(b"".join(body)))
        else:
            for start in range(0, len(body), 500):
                last = start + 500 >= len(body)
                garbage = self.history_garbage if cut is not None and last else b""
                await conn.write(b"".join(body[start : start + 500]) + garbage)
        self._close(conn)

    def _records(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        start, end = request["StartDateTime"], request["EndDateTime"]
        now = self.now_s or int(time.time())
        end = min(end or now, now)
        interval = request["RecordInterval"]
        if interval == 0:
            path = FIXTURES / f"{request['Symbol']}_trades.json"
            trades = fixture_trades(request["Symbol"]) if path.exists() else []
            return [{"Type": m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE, **t} for t in trades
                    if start <= t["DateTime"] < end + 1]  # fmt: skip
        first = -(-start // interval) * interval
        return [bar_record(request["Symbol"], interval, t)
                for t in range(first, end + 1, interval)]  # fmt: skip


# A stand-alone sandbox venue -------------------------------------------------------------


async def _stream(fake: FakeDtc, rate: float) -> None:
    """A random walk of trades and quotes for every subscribed symbol, ``rate`` a second."""
    rng = random.Random()
    prices = {symbol: 5000.0 + 100 * n for n, symbol in enumerate(fake.symbols)}
    while True:
        await asyncio.sleep(1 / rate)
        for symbol in fake.symbols:
            prices[symbol] += rng.choice((-0.25, 0.0, 0.25))
            price, now = prices[symbol], time.time()
            trade = {"Price": price, "Volume": float(rng.randint(1, 10)),
                     "DateTime": round(now, 3), "AtBidOrAsk": rng.choice((1, 2))}  # fmt: skip
            await fake.trade(symbol, trade)
            quote = {"Type": m.MARKET_DATA_UPDATE_BID_ASK, "BidPrice": price - 0.25,
                     "BidQuantity": 10.0, "AskPrice": price, "AskQuantity": 12.0,
                     "DateTime": int(now)}  # fmt: skip
            await fake.push(symbol, quote)


async def _main(args: argparse.Namespace) -> None:
    fake = FakeDtc(
        port=args.port, historical_port=args.historical_port, password=args.password, host=args.host
    )
    await fake.start()
    log.info("fake DTC server: market data on %d, history on %d", fake.port, fake.historical_port)
    try:
        await _stream(fake, args.rate)
    finally:
        await fake.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="listen on HOST (default %(default)s)")
    parser.add_argument("--port", type=int, default=18099, help="market-data port")
    parser.add_argument("--historical-port", type=int, default=18098, help="historical port")
    parser.add_argument("--rate", type=float, default=10.0, help="trades a second per symbol")
    parser.add_argument("--password", default=None, help="refuse logons with another password")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
