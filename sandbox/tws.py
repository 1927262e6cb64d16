"""A TWS on loopback: speaks the TWS API socket protocol (server version 176) well enough for
the real ``ib_async`` client to run unchanged against it.

It answers the start-up handshake and synchronisation (nextValidId, managedAccounts, positions,
account updates, executions, open and completed orders, each with its end message), contract
details from ``sandbox/fixtures/ibkr/contracts.json``, historical bars from a deterministic series
(:func:`history_bar`), tick-by-tick and real-time-bar subscriptions (fed by the ``publish_*``
methods or, standalone, by replaying ``trades.json``), and enforces IB's historical pacing rules
like IB does: a violating request gets error 162 and is counted in ``pacing_violations``.

Faults on demand: :meth:`drop` (connection lost), ``drop_on`` (close the connection when a
request of a given message id arrives, unanswered: 9 contract details, i.e. during
qualification; 97 tick-by-tick and 50 real-time bars, during subscription; 20 historical data,
during a gap fill), :meth:`send_error` (1100, 1101, 1102, …),
``silent`` (the socket stays open, nothing is answered or sent), ``pacing_errors`` (the next
historical requests answered with 162), ``reject_ticks`` (symbols whose tick-by-tick requests
fail with error 10190), ``send_raw`` (malformed frames), ``history_bar_extra`` (values
appended to every bar of a historical-data frame: a layout another server version might send).

Standalone, as the sandbox venue: ``python -m sandbox.tws --port 17497``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sandbox import FIXTURES as RECORDINGS
from sandbox.tws_wire import (
    ACCOUNT,
    SERVER_VERSION,
    Instrument,
    WireError,
    contract_details,
    error,
    frame,
    historical_data,
    read_handshake,
    read_request,
    realtime_bar,
    tick_by_tick_bid_ask,
    tick_by_tick_last,
)

log = logging.getLogger(__name__)

FIXTURES: Final = RECORDINGS / "ibkr"
BAR_SECONDS: Final = {
    "1 secs": 1, "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30, "1 min": 60,
    "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600, "15 mins": 900,
    "20 mins": 1200, "30 mins": 1800, "1 hour": 3600, "2 hours": 7200, "3 hours": 10_800,
    "4 hours": 14_400, "8 hours": 28_800, "1 day": 86_400,
}  # fmt: skip
DURATION_UNIT: Final = {"S": 1, "D": 86_400, "W": 604_800, "M": 2_592_000, "Y": 31_536_000}
TICK_KINDS: Final = {"Last": 1, "AllLast": 2, "BidAsk": 3}
PACING_TEXT: Final = (
    "Historical Market Data Service error message:Historical data request pacing violation"
)
NO_DATA_TEXT: Final = "Historical Market Data Service error message:HMDS query returned no data"


def instruments() -> list[Instrument]:
    return [Instrument(**row) for row in json.loads((FIXTURES / "contracts.json").read_text())]


def recorded_trades() -> dict[str, list[dict[str, Any]]]:
    data = json.loads((FIXTURES / "trades.json").read_text())
    return {symbol: rows for symbol, rows in data.items() if not symbol.startswith("_")}


def history_bar(
    symbol: str, bar_size: str, open_s: int
) -> tuple[str, str, str, str, str, str, int]:
    """The bar of ``symbol`` opening at ``open_s``: open, high, low, close, volume, wap, count;
    the same every time it is asked for."""
    rng = random.Random(f"{symbol}/{bar_size}/{open_s}")
    base = 100 + (open_s // BAR_SECONDS[bar_size]) % 400
    o, c = base + rng.randint(0, 99) / 100, base + rng.randint(0, 99) / 100
    h, low = max(o, c) + rng.randint(0, 40) / 100, min(o, c) - rng.randint(0, 40) / 100
    return (f"{o:.2f}", f"{h:.2f}", f"{low:.2f}", f"{c:.2f}", str(rng.randint(1, 5000)),
            f"{(o + c) / 2:.3f}", rng.randint(1, 300))  # fmt: skip


@dataclass
class Client:
    writer: asyncio.StreamWriter
    client_id: int = -1
    ticks: dict[str, tuple[str, int]] = field(default_factory=dict)  # reqId → (symbol, kind)
    bars: dict[str, str] = field(default_factory=dict)  # reqId → symbol

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


@dataclass
class FakeTws:
    """Start with :meth:`start`; connect ib_async to ``127.0.0.1:port``."""

    port: int = 0
    # 127.0.0.1; 0.0.0.0 in a container, where the producers connect from other containers
    host: str = "127.0.0.1"
    now: Callable[[], float] = time.time
    contracts: list[Instrument] = field(default_factory=instruments)
    gaps: set[int] = field(default_factory=set)  # bar open times with no data (market closed)
    silent: bool = False
    pacing_errors: int = 0
    reject_ticks: set[str] = field(default_factory=set)
    # Request message id -> how many more times a connection is closed when one arrives.
    drop_on: dict[int, int] = field(default_factory=dict)
    # What the handshake answers: an older TWS is another version here (the frames stay 176's).
    server_version: int = SERVER_VERSION
    history_bar_extra: tuple[Any, ...] = ()
    # What the fake saw, for tests to assert on.
    connections: int = 0
    requests: list[list[str]] = field(default_factory=list)
    pacing_violations: int = 0
    clients: list[Client] = field(default_factory=list)
    _history: deque[tuple[float, tuple[str, ...], tuple[str, ...]]] = field(default_factory=deque)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop()
            for writer in self._writers:
                writer.close()  # handshakes not finished yet
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5)
            await self._server.wait_closed()

    # Faults and feeds.

    def drop(self) -> None:
        """Close every client connection at once, as a TWS restart does."""
        for client in self.clients:
            client.writer.close()
        self.clients.clear()

    def send_error(self, code: int, text: str, req_id: int = -1) -> None:
        for client in self.clients:
            client.send(error(req_id, code, text))

    def send_raw(self, data: bytes) -> None:
        for client in self.clients:
            client.send(data)

    def subscribed(self, kind: str) -> list[str]:
        """Symbols with a live subscription of ``kind`` (a tick type, or ``bars``)."""
        found: list[str] = []
        for client in self.clients:
            if kind == "bars":
                found += client.bars.values()
            else:
                found += [s for s, k in client.ticks.values() if k == TICK_KINDS[kind]]
        return found

    def count(self, message_id: int) -> int:
        return sum(1 for request in self.requests if request[:1] == [str(message_id)])

    def publish_trade(self, symbol: str, time_s: int, trade: dict[str, Any]) -> int:
        """Send a trade to every Last/AllLast subscriber of ``symbol``; returns how many."""
        sent = 0
        for client in self._live():
            for req_id, (sub, kind) in client.ticks.items():
                if sub == symbol and kind in (1, 2):
                    client.send(tick_by_tick_last(req_id, kind, time_s, trade))
                    sent += 1
        return sent

    def publish_quote(self, symbol: str, time_s: int, quote: dict[str, Any]) -> int:
        sent = 0
        for client in self._live():
            for req_id, (sub, kind) in client.ticks.items():
                if sub == symbol and kind == 3:
                    client.send(tick_by_tick_bid_ask(req_id, time_s, quote))
                    sent += 1
        return sent

    def publish_bar(self, symbol: str, open_s: int) -> int:
        """Send the 5-second bar opening at ``open_s`` (from :func:`history_bar`)."""
        sent = 0
        for client in self._live():
            for req_id, sub in client.bars.items():
                if sub == symbol:
                    client.send(realtime_bar(req_id, open_s, history_bar(sub, "5 secs", open_s)))
                    sent += 1
        return sent

    def _live(self) -> list[Client]:
        return [] if self.silent else self.clients

    # The protocol.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer)
        self.connections += 1
        if (task := asyncio.current_task()) is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._writers.add(writer)
        try:
            await read_handshake(reader)
            now = datetime.now(UTC).strftime("%Y%m%d %H:%M:%S UTC")
            client.send(frame(self.server_version, now))
            self.clients.append(client)
            while True:
                request = await read_request(reader)
                if self.silent:
                    continue
                self.requests.append(request)
                if self._drops(request):
                    log.debug("closing the connection on request %s", request[0])
                    return
                self._answer(client, request)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, WireError) as exc:
            log.debug("client %d gone: %s", client.client_id, exc)
        finally:
            if client in self.clients:
                self.clients.remove(client)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _drops(self, request: list[str]) -> bool:
        kind = int(request[0]) if request and request[0].isdigit() else -1
        if self.drop_on.get(kind, 0) <= 0:
            return False
        self.drop_on[kind] -= 1
        return True

    def _answer(self, client: Client, r: list[str]) -> None:  # noqa: PLR0912
        kind = int(r[0])
        if kind == 71:  # startApi
            client.client_id = int(r[2])
            client.send(frame(9, 1, 1) + frame(15, 1, ACCOUNT))
            for code, text in ((2104, "Market data farm connection is OK:usfarm"),
                               (2106, "HMDS data farm connection is OK:ushmds"),
                               (2158, "Sec-def data farm connection is OK:secdefnj")):  # fmt: skip
                client.send(error(-1, code, text))
        elif kind == 61:  # positions
            client.send(frame(62, 1))
        elif kind == 6:  # account updates
            client.send(frame(8, 1, "12:00") + frame(54, 1, r[3]))
        elif kind == 76:  # account updates for a (sub-)account
            client.send(frame(74, 1, r[2]))
        elif kind == 7:  # executions
            client.send(frame(55, 1, r[2]))
        elif kind == 5:  # open orders
            client.send(frame(53, 1))
        elif kind == 99:  # completed orders
            client.send(frame(102))
        elif kind == 49:  # current time
            client.send(frame(49, 1, int(self.now())))
        elif kind == 9:
            self._contract_details(client, r[2], r[3:15])
        elif kind == 20:
            self._historical(client, r)
        elif kind == 97:  # tick-by-tick
            self._subscribe_ticks(client, r[1], r[2:14], r[14])
        elif kind == 98:
            client.ticks.pop(r[1], None)
        elif kind == 50:  # real-time bars
            if (found := self._find(r[3:15])) is not None:
                client.bars[r[2]] = found.localSymbol
            else:
                client.send(error(r[2], 200, "No security definition has been found"))
        elif kind == 51:
            client.bars.pop(r[2], None)

    def _find(self, contract: list[str]) -> Instrument | None:
        matches = [c for c in self.contracts if c.matches(contract)]
        return matches[0] if len(matches) == 1 else None

    def _contract_details(self, client: Client, req_id: str, contract: list[str]) -> None:
        matches = [c for c in self.contracts if c.matches(contract)]
        if not matches:
            client.send(error(req_id, 200, "No security definition has been found for the request"))
            return
        for found in matches:
            client.send(contract_details(req_id, found))
        client.send(frame(52, 1, req_id))

    def _subscribe_ticks(self, client: Client, req_id: str, contract: list[str], kind: str) -> None:
        found = self._find(contract)
        if found is None or kind not in TICK_KINDS:
            client.send(error(req_id, 200, "No security definition has been found"))
        elif found.localSymbol in self.reject_ticks:
            client.send(
                error(req_id, 10190, "Max number of tick-by-tick requests has been reached.")
            )
        else:
            client.ticks[req_id] = (found.localSymbol, TICK_KINDS[kind])

    def _historical(self, client: Client, r: list[str]) -> None:
        req_id, contract, end_text, bar_size, span, what = r[1], r[2:14], r[15], r[16], r[17], r[19]
        found = self._find(contract)
        if found is None:
            client.send(error(req_id, 200, "No security definition has been found"))
            return
        if self.pacing_errors > 0 or self._violates(found, r[15:21], what):
            self.pacing_errors = max(0, self.pacing_errors - 1)
            client.send(error(req_id, 162, PACING_TEXT))
            return
        end = int(self.now()) if not end_text else int(
            datetime.strptime(end_text, "%Y%m%d %H:%M:%S UTC").replace(tzinfo=UTC).timestamp()
        )  # fmt: skip
        amount, unit = span.split()
        step = BAR_SECONDS[bar_size]
        lower = end - int(amount) * DURATION_UNIT[unit]
        first = -(-lower // step) * step
        rows = [
            (
                self._date(t, step),
                *history_bar(found.localSymbol, bar_size, t),
                *self.history_bar_extra,
            )
            for t in range(first, end, step)
            if t not in self.gaps
        ]
        if not rows:
            client.send(error(req_id, 162, f"{NO_DATA_TEXT}: {found.localSymbol}"))
            return
        stamp = "%Y%m%d %H:%M:%S"
        client.send(historical_data(req_id, time.strftime(stamp, time.gmtime(lower)),
                                    time.strftime(stamp, time.gmtime(end)), rows))  # fmt: skip

    @staticmethod
    def _date(open_s: int, step: int) -> str:
        return time.strftime("%Y%m%d", time.gmtime(open_s)) if step >= 86_400 else str(open_s)

    def _violates(self, found: Instrument, params: list[str], what: str) -> bool:
        """IB's rules: an identical request within 15 s; six or more for one contract, exchange
        and tick type within 2 s; more than 60 in ten minutes."""
        now = time.monotonic()
        identity = (str(found.conId), *params)
        key = (str(found.conId), found.exchange, what)
        while self._history and self._history[0][0] < now - 600:
            self._history.popleft()
        history = list(self._history)
        self._history.append((now, identity, key))
        violated = (
            any(i == identity and t > now - 15 for t, i, _ in history)
            or sum(1 for t, _, k in history if k == key and t > now - 2) >= 5
            or len(history) >= 60
        )
        self.pacing_violations += violated
        return violated


async def replay(fake: FakeTws, interval_s: float) -> None:
    """The sandbox feed: the recorded trades again and again, stamped with the current time,
    and a 5-second bar of each subscribed symbol every five seconds."""
    trades = recorded_trades()
    last_bar = 0
    while True:
        now = int(fake.now())
        for symbol, rows in trades.items():
            for row in rows:
                fake.publish_trade(symbol, now + row["offset_s"], row)
        if now // 5 * 5 - 5 > last_bar:
            last_bar = now // 5 * 5 - 5
            for symbol in set(fake.subscribed("bars")):
                fake.publish_bar(symbol, last_bar)
        await asyncio.sleep(interval_s)


async def _main(host: str, port: int, interval_s: float) -> None:
    fake = FakeTws(port=port, host=host)
    await fake.start()
    log.warning("fake TWS (server version %d) on %s:%d", SERVER_VERSION, host, fake.port)
    try:
        await replay(fake, interval_s)
    finally:
        await fake.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake TWS replaying recorded IB market data.")
    parser.add_argument("--host", default="127.0.0.1", help="listen on HOST (default %(default)s)")
    parser.add_argument("--port", type=int, default=17497, help="listen on HOST:PORT")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between replays of the recorded trades")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.host, args.port, args.interval))


if __name__ == "__main__":
    main()
