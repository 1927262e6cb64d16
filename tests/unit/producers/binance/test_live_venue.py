"""BinanceLive's hooks for the reconnect loop, without a network: what ``serve`` makes of the
frames queued by the connections' reader threads, how ``open`` fails, that a connection completed
after the loop stopped waiting for it is closed, and how a gap fill that cannot reach Binance
reports each instrument."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from marketdata.errors import TransientError
from producers.binance import connection
from producers.binance.connector import ClientError, RestClient
from producers.binance.live import _CLOSED as CLOSED
from producers.binance.live import _PING as PING
from producers.binance.live import BinanceLive, Connection
from producers.publisher import Publisher
from tests.unit.producers.binance.mutations import FIXTURES, RECEIVED
from tests.unit.producers.binance.test_live_frames import Collected

TRADE = (FIXTURES / "trade.json").read_text().strip()
KLINE = (FIXTURES / "kline.json").read_text().strip()
SHUTDOWN = '{"stream": "btcusdt@trade", "data": {"e": "serverShutdown", "E": 1709294400000}}'


def venue(rest: Any = None, stream_url: str = "ws://127.0.0.1:9") -> tuple[BinanceLive, Collected]:
    collected = Collected()
    live = BinanceLive(stream_url, cast(RestClient, rest), ["btcusdt@trade", "btcusdt@kline_1m"],
                       cast(Publisher, collected), idle_s=0.001)  # fmt: skip
    return live, collected


def session(number: int, *, age_s: float = 0.0) -> Connection:
    return Connection(number, cast(Any, None), time.monotonic() - age_s)


def queue(live: BinanceLive, *items: tuple[int, str]) -> None:
    for number, frame in items:
        live._queue.put_nowait((number, RECEIVED, frame))


async def test_a_server_shutdown_rotates_after_the_frames_before_it_and_pings_are_heard() -> None:
    live, collected = venue()
    queue(live, (2, PING), (1, TRADE), (1, CLOSED), (2, TRADE), (2, SHUTDOWN), (2, TRADE))
    ended = await asyncio.wait_for(live.serve(session(2), asyncio.Event()), 5)
    assert (ended.kind, ended.reason) == ("rotate", "Binance announced a server shutdown")
    # The first connection's frame (a rotation's overlap) counts; its close ends nothing.
    assert [r.source for r in collected.records] == ["binance.trade", "binance.trade"]
    assert live.stats.last_heard is not None
    assert live._queue.qsize() == 1  # the frame after the announcement waits for the next serve


async def test_a_server_shutdown_on_the_connection_being_replaced_is_no_new_rotation() -> None:
    live, _ = venue()
    queue(live, (1, SHUTDOWN), (2, CLOSED))
    ended = await asyncio.wait_for(live.serve(session(2), asyncio.Event()), 5)
    assert (ended.kind, ended.reason) == ("lost", "the connection closed")
    assert live.stats.last_heard is None  # a close says nothing about liveness


async def test_a_connection_near_its_24_hours_asks_for_rotation() -> None:
    live, _ = venue()
    live.rotate_s = 60
    ended = await asyncio.wait_for(live.serve(session(1, age_s=61), asyncio.Event()), 5)
    assert ended.kind == "rotate"
    assert (await live.serve(session(1, age_s=59), stopped())).kind == "stopped"


def stopped() -> asyncio.Event:
    until = asyncio.Event()
    until.set()
    return until


async def test_serve_returns_promptly_once_told_and_finish_handles_what_was_queued() -> None:
    live, collected = venue()
    until = asyncio.Event()
    serving = asyncio.create_task(live.serve(session(1), until))
    await asyncio.sleep(0.05)
    queue(live, (1, TRADE))
    await asyncio.sleep(0.05)
    until.set()
    assert (await asyncio.wait_for(serving, 1)).kind == "stopped"
    queue(live, (1, KLINE), (1, CLOSED))
    await live.finish()
    assert [r.source for r in collected.records] == ["binance.trade", "binance.kline"]
    assert live._queue.empty()


async def test_a_refused_connect_is_a_retriable_error_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    live, _ = venue(stream_url=f"ws://127.0.0.1:{port}")
    with pytest.raises(TransientError, match=f"ws://127.0.0.1:{port}: .*refused") as raised:
        await asyncio.wait_for(live.open(), 10)
    assert raised.value.retriable


async def test_a_connection_completed_after_the_wait_was_cancelled_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[object] = []
    monkeypatch.setattr(connection, "close_later", closed.append)
    opening: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(connection.kept_or_closed(opening))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert closed == []
    late = object()
    opening.set_result(late)  # the connect thread finishes after all
    await asyncio.sleep(0)
    assert closed == [late]


class Refusing:
    """A REST client to which Binance says no (an unknown symbol: no retry)."""

    session = None

    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ClientError(400, -1121, "Invalid symbol.", {})

        return refuse


async def test_a_gap_binance_will_not_serve_is_unfilled_for_each_instrument_it_took() -> None:
    live, _ = venue(rest=Refusing())
    await live._handle(RECEIVED, TRADE)
    await live._handle(RECEIVED, KLINE)  # a closed bar
    await live.fill_gap(session(1), datetime(2024, 3, 1, tzinfo=UTC))
    btcusdt = live.stats.instruments["BTCUSDT"]
    assert (btcusdt.gaps_filled, btcusdt.gaps_unfilled) == (0, 1)
    assert (live.stats.unfilled_gaps, live.stats.gap_trades, live.stats.gap_bars) == (1, 0, 0)
