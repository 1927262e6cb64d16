"""A Binance-compatible server on loopback: REST (ping, time, exchangeInfo, klines,
historicalTrades, aggTrades) and WebSocket streams (``/ws/<stream>``, ``/stream?streams=``),
speaking Binance's wire formats so that binance-connector's real clients run against it
unchanged.

Klines come from a deterministic series per symbol and interval (a random walk seeded by the
symbol), so a test knows the exact bar set of any range. Trades and aggregate trades pushed (or
only recorded) are served again by id. Times are milliseconds unless a request asks for
microseconds as Binance documents it (``timeUnit=MICROSECOND`` on a stream URL, the
``X-MBX-TIME-UNIT: MICROSECOND`` header on REST), or ``microseconds`` is set (a venue that
answers in µs whatever is asked); time parameters are taken in either unit. A trade may be
recorded with its time in µs (Binance's engine keeps µs): millisecond answers truncate it, as
Binance's do. ``aggTrades`` takes ``fromId``, or ``startTime`` and ``endTime`` less than an hour
apart (else Binance's -1127). Faults on demand:
``fail_next`` (e.g. 429 with Retry-After), ``weight_used`` (the X-MBX-USED-WEIGHT-1m the next
answers report), ``drop_connections``, ``push_raw`` (malformed frames), ``silent``, ``mute``,
``deaf_to_close`` (close frames never answered), ``bad_klines`` (rows replaced by a test's own,
a :class:`RawJSON` row sent as its text: JSON that Python's encoder would refuse to write).

Standalone, as the sandbox venue: ``python -m sandbox.binance --port 18090`` streams trades
(a random walk) and closed 1m klines for its symbols.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from aiohttp import WSMsgType, web

from sandbox.web import serve

INTERVAL_MS: Final = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000,
}  # fmt: skip
SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
# What a stream connection asked for (aiohttp warns, once per string key, about plain keys).
COMBINED: Final = web.ResponseKey("combined", bool)
MICRO: Final = web.ResponseKey("micro", bool)
STREAMS: Final = web.ResponseKey("streams", set)
_ENDS: Final = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR))


def kline_row(symbol: str, interval: str, open_ms: int) -> list[Any]:
    """The bar opening at ``open_ms``, the same every time it is asked for."""
    step = INTERVAL_MS[interval]
    rng = random.Random(f"{symbol}/{interval}/{open_ms}")
    base = Decimal(1000 + (open_ms // step) % 500)
    o = base + Decimal(rng.randint(0, 99)) / 100
    c = base + Decimal(rng.randint(0, 99)) / 100
    h = max(o, c) + Decimal(rng.randint(0, 50)) / 100
    low = min(o, c) - Decimal(rng.randint(0, 50)) / 100
    volume = Decimal(rng.randint(1, 10_000)) / 1000
    close_ms = open_ms + step - 1
    return [open_ms, f"{o:.8f}", f"{h:.8f}", f"{low:.8f}", f"{c:.8f}", f"{volume:.8f}",
            close_ms, f"{volume * c:.8f}", rng.randint(1, 500), "0", "0", "0"]  # fmt: skip


def kline_event(symbol: str, interval: str, open_ms: int, *, closed: bool = True) -> dict[str, Any]:
    """The stream event of the kline :func:`kline_row` gives, still moving or closed."""
    row = kline_row(symbol, interval, open_ms)
    return {"e": "kline", "E": row[6], "s": symbol, "k": {
        "t": row[0], "T": row[6], "s": symbol, "i": interval, "f": 1, "L": 2, "o": row[1],
        "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": row[8], "x": closed,
        "q": row[7], "V": "0", "Q": "0", "B": "0"}}  # fmt: skip


@dataclass(frozen=True)
class RawJSON:
    """A row sent as this JSON text, e.g. a number of 5,000 digits."""

    text: str


@dataclass
class FakeBinance:
    """Start with :meth:`start`; ``rest_url`` and ``stream_url`` are the addresses to use."""

    now_ms: int | None = None  # fixed server time; None follows the clock
    weight_used: int = 0
    klines_requests: int = 0
    silent: bool = False  # no reply to SUBSCRIBE
    mute: bool = False  # no frames at all, the connection left open
    deaf_to_close: bool = False  # a client's close frame is never answered
    microseconds: bool = False  # every time in µs, whatever the request asks
    subscriptions: int = 0
    trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    agg_trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # open time (ms) -> the row served instead of that kline's
    bad_klines: dict[int, Any] = field(default_factory=dict)
    _faults: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    port: int = 0
    # 127.0.0.1; 0.0.0.0 in a container, where the producers connect from other containers
    host: str = "127.0.0.1"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def server_ms(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/historicalTrades", self._historical_trades)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        app.router.add_get("/ws/{stream}", self._stream)
        app.router.add_get("/ws", self._stream)
        app.router.add_get("/stream", self._stream)
        self._runner, self.port = await serve(app, self.host, self.port)

    async def aclose(self) -> None:
        self._closing.set()
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()

    # Faults --------------------------------------------------------------------------------

    def fail_next(self, status: int, *, retry_after: int | None = None, code: int = -1003,
                  msg: str = "Too many requests.") -> None:  # fmt: skip
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._faults.append((status, headers, {"code": code, "msg": msg}))

    async def drop_connections(self) -> None:
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close()
        self._sockets.clear()

    # Streams -------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return len(self._sockets)

    async def push(self, stream: str, payload: dict[str, Any]) -> None:
        """Send one event to every connection (combined format on ``/stream`` connections)."""
        if payload.get("e") == "trade":
            self.record_trade(payload)
        elif payload.get("e") == "aggTrade":
            self.record_agg_trade(payload)
        if self.mute:
            return
        for socket in list(self._sockets):
            if socket[STREAMS] and stream not in socket[STREAMS]:
                continue  # Binance sends only what a connection subscribed to
            data = _in_unit(payload, micro=socket[MICRO])
            body = {"stream": stream, "data": data} if socket[COMBINED] else data
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(json.dumps(body))

    def record_trade(self, event: dict[str, Any]) -> None:
        """A trade that happened (served by historicalTrades), pushed or not."""
        self.trades.setdefault(event["s"], []).append(event)

    def record_agg_trade(self, event: dict[str, Any]) -> None:
        """An aggregate trade that happened (served by aggTrades), pushed or not."""
        self.agg_trades.setdefault(event["s"], []).append(event)

    async def push_raw(self, text: str) -> None:
        for socket in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(text)

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(
            heartbeat=None if self.mute else 20.0, autoclose=not self.deaf_to_close
        )
        await socket.prepare(request)
        socket[COMBINED] = request.path == "/stream"
        socket[MICRO] = self.microseconds or _asks_microseconds(request.query.get("timeUnit"))
        named = request.match_info.get("stream") or request.query.get("streams", "")
        socket[STREAMS] = {name for name in named.split("/") if name}
        self._sockets.add(socket)
        try:
            while True:
                message = await socket.receive()
                if message.type == WSMsgType.CLOSE and self.deaf_to_close:
                    await self._closing.wait()  # hold the connection, answer nothing
                if message.type in _ENDS:
                    break
                if message.type != WSMsgType.TEXT:
                    continue
                command = json.loads(message.data)
                if command.get("method") == "SUBSCRIBE":
                    self.subscriptions += 1
                    socket[STREAMS].update(command.get("params", []))
                if command.get("method") in {"SUBSCRIBE", "UNSUBSCRIBE"} and not self.silent:
                    await socket.send_str(json.dumps({"result": None, "id": command.get("id")}))
        finally:
            self._sockets.discard(socket)
        return socket

    # REST ----------------------------------------------------------------------------------

    def _micro(self, request: web.Request) -> bool:
        return self.microseconds or _asks_microseconds(request.headers.get("X-MBX-TIME-UNIT"))

    def _headers(self, weight: int) -> dict[str, str]:
        self.weight_used += weight
        return {"X-MBX-USED-WEIGHT-1m": str(self.weight_used)}

    def _fault(self) -> web.Response | None:
        if not self._faults:
            return None
        status, headers, body = self._faults.pop(0)
        return web.json_response(body, status=status, headers=headers)

    async def _ping(self, _: web.Request) -> web.Response:
        return self._fault() or web.json_response({}, headers=self._headers(1))

    async def _time(self, request: web.Request) -> web.Response:
        now = self.server_ms() * (1000 if self._micro(request) else 1)
        return self._fault() or web.json_response({"serverTime": now}, headers=self._headers(1))

    async def _exchange_info(self, _: web.Request) -> web.Response:
        symbols = [{"symbol": s, "status": "TRADING", "baseAsset": s[:3], "quoteAsset": s[3:]}
                   for s in SYMBOLS]  # fmt: skip
        return self._fault() or web.json_response(
            {"timezone": "UTC", "serverTime": self.server_ms(), "symbols": symbols},
            headers=self._headers(20),
        )

    async def _klines(self, request: web.Request) -> web.Response:
        self.klines_requests += 1
        fault = self._fault()
        if fault is not None:
            return fault
        query = request.query
        symbol, interval = query.get("symbol", ""), query.get("interval", "")
        if symbol not in SYMBOLS:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        if interval not in INTERVAL_MS:
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        limit = min(int(query.get("limit", 500)), 1000)
        step = INTERVAL_MS[interval]
        now = self.server_ms()
        end = min(_ms(query.get("endTime", now)), now)
        start = _ms(query.get("startTime", end - step * limit))
        first = -(-start // step) * step  # first open time at or after startTime
        micro = self._micro(request)
        # A test's own rows are served as it wrote them, in whatever unit it chose.
        rows = [self.bad_klines[t] if t in self.bad_klines else
                _row_in_microseconds(kline_row(symbol, interval, t), step) if micro else
                kline_row(symbol, interval, t)
                for t in range(first, end + 1, step)][:limit]  # fmt: skip
        await asyncio.sleep(0)
        body = ",".join(row.text if isinstance(row, RawJSON) else json.dumps(row) for row in rows)
        return web.Response(text=f"[{body}]", content_type="application/json",
                            headers=self._headers(2 if limit <= 1000 else 5))  # fmt: skip

    async def _historical_trades(self, request: web.Request) -> web.Response:
        fault = self._fault()
        if fault is not None:
            return fault
        symbol = request.query.get("symbol", "")
        if symbol not in SYMBOLS:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = min(int(request.query.get("limit", 500)), 1000)
        from_id = int(request.query.get("fromId", 0))
        micro = self._micro(request)
        rows = [
            {"id": t["t"], "price": t["p"], "qty": t["q"], "quoteQty": "0",
             "time": _unit_time(t["T"], micro=micro),
             "isBuyerMaker": t["m"], "isBestMatch": True}
            for t in sorted(self.trades.get(symbol, []), key=lambda t: int(t["t"]))
            if int(t["t"]) >= from_id
        ][:limit]  # fmt: skip
        return web.json_response(rows, headers=self._headers(25))

    async def _agg_trades(self, request: web.Request) -> web.Response:
        """``GET /api/v3/aggTrades``: rows as Binance documents them (a, p, q, f, l, T, m, M),
        from ``fromId`` (inclusive), else within ``startTime`` … ``endTime`` (inclusive, less
        than an hour apart), up to ``limit``."""
        fault = self._fault()
        if fault is not None:
            return fault
        query = request.query
        symbol = query.get("symbol", "")
        if symbol not in SYMBOLS:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = min(int(query.get("limit", 500)), 1000)
        micro = self._micro(request)
        events = sorted(self.agg_trades.get(symbol, []), key=lambda t: int(t["a"]))
        if "fromId" in query:
            events = [t for t in events if int(t["a"]) >= int(query["fromId"])]
        elif "startTime" in query or "endTime" in query:
            first = _us(query.get("startTime", 0))
            last = _us_end(query.get("endTime", self.server_ms()))
            if "startTime" in query and "endTime" in query and last - first >= 3_600_000_000:
                return web.json_response({"code": -1127, "msg": "More than 1 hours between "
                                          "startTime and endTime."}, status=400)  # fmt: skip
            events = [t for t in events if first <= _us(t["T"]) <= last]
        rows = [
            {"a": t["a"], "p": t["p"], "q": t["q"], "f": t["f"], "l": t["l"],
             "T": _unit_time(t["T"], micro=micro), "m": t["m"], "M": t.get("M", True)}
            for t in events[:limit]
        ]  # fmt: skip
        return web.json_response(rows, headers=self._headers(4))


def _asks_microseconds(unit: str | None) -> bool:
    return (unit or "").upper() == "MICROSECOND"


def _ms(value: str | int) -> int:
    """A time parameter in milliseconds; Binance takes them in ms or µs (by magnitude)."""
    number = int(value)
    return number // 1000 if number >= 10**14 else number


def _us(value: str | int) -> int:
    """A time parameter or recorded time in microseconds, from ms or µs (by magnitude)."""
    number = int(value)
    return number if number >= 10**14 else number * 1000


def _us_end(value: str | int) -> int:
    """An inclusive end time in microseconds: an end in ms includes the whole millisecond."""
    number = int(value)
    return number if number >= 10**14 else number * 1000 + 999


def _unit_time(value: int, *, micro: bool) -> int:
    """A recorded time (ms, or µs) in the unit asked for: a µs time truncated to ms when
    milliseconds are asked for, as Binance's engine does."""
    return _us(value) if micro else _us(value) // 1000


def _row_in_microseconds(row: list[Any], step_ms: int) -> list[Any]:
    return [row[0] * 1000, *row[1:6], row[0] * 1000 + step_ms * 1000 - 1, *row[7:]]


def _in_unit(event: dict[str, Any], *, micro: bool) -> dict[str, Any]:
    """A stream event with its times in the unit the connection asked for (``timeUnit``)."""
    times = {"E", "T"} if event.get("e") in {"trade", "aggTrade", "kline"} else set()
    converted = {k: _unit_time(v, micro=micro) if k in times and _is_int(v) else v
                 for k, v in event.items()}  # fmt: skip
    if isinstance(event.get("k"), dict):
        converted["k"] = {k: _unit_time(v, micro=micro) if k in {"t", "T"} and _is_int(v) else v
                          for k, v in event["k"].items()}  # fmt: skip
    return converted


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# A stand-alone sandbox venue -------------------------------------------------------------


async def replay(
    fake: FakeBinance, rate: float, *, symbols: Sequence[str] = SYMBOLS, count: int | None = None
) -> None:
    """Trades at ``rate`` a second per symbol (``count`` each, or without end), and each
    symbol's closed 1m kline as a minute ends, stamped with the current time.

    The rate holds on a schedule: each wake sends every round due since the start, so a rate
    above what one sleep a round allows (the loop's timer resolution, the time a push takes) is
    still offered, in bursts, rather than silently lowered. ``math.inf`` sends as fast as it can.
    """
    if math.isinf(rate) and count is None:
        raise ValueError("a replay without end needs a finite rate")
    limit = sys.maxsize if count is None else count
    rng = random.Random()
    trade_ids = dict.fromkeys(symbols, 1)
    last_minute = fake.server_ms() // 60_000
    started, sent = time.monotonic(), 0
    while sent < limit:
        if math.isinf(rate):
            await asyncio.sleep(0)
            due = limit
        else:
            await asyncio.sleep(max(0.0, started + (sent + 1) / rate - time.monotonic()))
            due = min(limit, int((time.monotonic() - started) * rate))
        now = fake.server_ms()
        # This minute's range of each symbol, which its trades' prices stay inside.
        ranges = {symbol: kline_row(symbol, "1m", now // 60_000 * 60_000) for symbol in symbols}
        for _ in range(due - sent):
            for symbol in symbols:
                row = ranges[symbol]
                spread = Decimal(row[2]) - Decimal(row[3])
                price = Decimal(row[3]) + spread * Decimal(rng.random())
                trade_ids[symbol] += 1
                await fake.push(f"{symbol.lower()}@trade", {
                    "e": "trade", "E": now, "s": symbol, "t": trade_ids[symbol],
                    "p": f"{price:.8f}", "q": f"{rng.randint(1, 5000) / 10_000:.8f}", "T": now,
                    "m": rng.random() < 0.5, "M": True,
                })  # fmt: skip
        sent = max(sent, due)
        if now // 60_000 > last_minute:
            closed = last_minute * 60_000
            last_minute = now // 60_000
            for symbol in symbols:
                row = kline_row(symbol, "1m", closed)
                await fake.push(f"{symbol.lower()}@kline_1m", kline_event(symbol, "1m", closed))


async def _main(host: str, port: int, rate: float) -> None:
    fake = FakeBinance(port=port, host=host)
    await fake.start()
    print(f"fake Binance on http://{host}:{fake.port} (REST and WebSocket)", flush=True)
    try:
        await replay(fake, rate)
    finally:
        await fake.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Binance streaming generated trades.")
    parser.add_argument("--host", default="127.0.0.1", help="listen on HOST (default %(default)s)")
    parser.add_argument("--port", type=int, default=18090, help="listen on HOST:PORT")
    parser.add_argument("--rate", type=float, default=10.0, help="trades a second per symbol")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.host, args.port, args.rate))


if __name__ == "__main__":
    main()
