"""The trades pagers (an hour window, then by id) against the sandbox venue on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from marketdata.errors import MarketDataError
from marketdata.records import Tick
from marketdata.settings import Settings
from producers.binance.connector import rest_client
from producers.binance.history import BinanceRest
from producers.binance.trades import Kind, TradePager
from sandbox.binance import FakeBinance

START = datetime(2024, 3, 1, tzinfo=UTC)
FIRST = START + timedelta(hours=2, minutes=30)  # the first two hour windows hold no trade
COUNT = 2500  # aggregate trades, 2 s apart: 83 minutes, over three hour windows
NOW = START + timedelta(days=1)


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def agg_event(n: int) -> dict[str, Any]:
    """Aggregate trade ``100 + n`` of two trades, ``10000 + 2n`` and the next, at one time."""
    return {"e": "aggTrade", "s": "BTCUSDT", "a": 100 + n, "p": f"{61000 + n}.25",
            "q": f"0.{n + 1:04d}", "f": 10_000 + 2 * n, "l": 10_001 + 2 * n,
            "T": ms(FIRST) + n * 2000, "m": n % 3 == 0}  # fmt: skip


def trade_events(n: int) -> list[dict[str, Any]]:
    agg = agg_event(n)
    return [{"e": "trade", "s": "BTCUSDT", "t": agg["f"] + k, "p": agg["p"], "q": f"0.{n:04d}{k}",
             "T": agg["T"], "m": agg["m"]} for k in (0, 1)]  # fmt: skip


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = FakeBinance(now_ms=ms(NOW))
    await server.start()
    for n in range(COUNT):
        server.record_agg_trade(agg_event(n))
        for event in trade_events(n):
            server.record_trade(event)
    yield server
    await server.aclose()


def rest(fake: FakeBinance, waits: list[float], unit: str = "millisecond") -> BinanceRest:
    settings = Settings.from_env({"BINANCE_API_BASE_URL": fake.rest_url, "BINANCE_TIME_UNIT": unit})
    return BinanceRest(rest_client(settings), sleep=waits.append)


async def fetch(pager: TradePager) -> tuple[list[Tick], list[tuple[Any, str]]]:
    def run() -> tuple[list[Tick], list[tuple[Any, str]]]:
        ticks: list[Tick] = []
        rejected: list[tuple[Any, str]] = []
        for page, bad in pager.pages(NOW):
            ticks += page
            rejected += bad
        return ticks, rejected

    return await asyncio.to_thread(run)


def at(n: int) -> datetime:
    return FIRST + timedelta(seconds=2 * n)


async def test_agg_trades_of_a_range_by_hour_windows_then_by_id(fake: FakeBinance) -> None:
    client = rest(fake, [])
    end = at(1999)
    ticks, rejected = await fetch(TradePager(client, "btcusdt", "aggTrades", START, end))
    assert rejected == []
    assert [int(t.trade_id) for t in ticks] == [100 + n for n in range(2000)]  # once each
    # Windows 00-01 and 01-02 empty, 02-03 holds 900 (fewer than a page), then by id: 1000, 1000.
    assert client.requests == 5
    sample = ticks[1234]
    event = agg_event(1234)
    assert (sample.symbol, sample.source, sample.timestamp, sample.price, sample.size) == (
        "BTCUSDT",
        "binance.aggTrade",
        at(1234),
        Decimal(event["p"]),
        Decimal(event["q"]),
    )
    assert sample.side == ("sell" if event["m"] else "buy")
    assert sample.extras == {"buyer_maker": event["m"], "first_trade_id": event["f"],
                             "last_trade_id": event["l"]}  # fmt: skip


async def test_every_trade_of_a_range_starts_at_the_first_trade_id_at_start(
    fake: FakeBinance,
) -> None:
    client = rest(fake, [])
    start, end = at(900), at(1200)
    ticks, _ = await fetch(TradePager(client, "BTCUSDT", "trades", start, end))
    expected = [event for n in range(900, 1201) for event in trade_events(n)]
    assert [(int(t.trade_id), t.timestamp, t.price, t.size) for t in ticks] == [
        (e["t"], at(e["t"] // 2 - 5000), Decimal(e["p"]), Decimal(e["q"])) for e in expected
    ]
    assert {t.source for t in ticks} == {"binance.trade"}


async def test_no_end_reads_until_the_pages_run_out(fake: FakeBinance) -> None:
    ticks, _ = await fetch(TradePager(rest(fake, []), "BTCUSDT", "trades", at(2000), None))
    assert [int(t.trade_id) for t in ticks] == list(range(14_000, 10_000 + 2 * COUNT))


async def test_a_start_within_a_trade_free_hour_moves_to_the_next_window(
    fake: FakeBinance,
) -> None:
    client = rest(fake, [])
    ticks, _ = await fetch(TradePager(client, "BTCUSDT", "aggTrades", START, at(0)))
    assert [t.trade_id for t in ticks] == ["100"]
    assert client.requests == 3  # two empty windows, then the one holding the first


async def test_a_range_without_trades_publishes_nothing(fake: FakeBinance) -> None:
    client = rest(fake, [])
    end = START + timedelta(hours=2)
    assert await fetch(TradePager(client, "BTCUSDT", "trades", START, end)) == ([], [])
    assert client.requests == 3  # [00:00, 01:00), [01:00, 02:00), [02:00, 02:00]


@pytest.mark.parametrize("kind", ["trades", "aggTrades"])
async def test_a_resume_pages_by_id_from_the_trade_after(fake: FakeBinance, kind: Kind) -> None:
    client = rest(fake, [])
    after = 10_500 if kind == "trades" else 350
    pager = TradePager(client, "BTCUSDT", kind, START, at(400), after_id=after)
    ticks, _ = await fetch(pager)
    last = 10_000 + 2 * 400 + 1 if kind == "trades" else 500
    assert [int(t.trade_id) for t in ticks] == list(range(after + 1, last + 1))
    assert client.requests == 1  # no window: the id is known


async def test_429_waits_for_retry_after_and_misses_nothing(fake: FakeBinance) -> None:
    waits: list[float] = []
    client = rest(fake, waits)
    fake.fail_next(429, retry_after=7)
    ticks, _ = await fetch(TradePager(client, "BTCUSDT", "aggTrades", START, at(1500)))
    assert waits == [7.0]
    assert [int(t.trade_id) for t in ticks] == [100 + n for n in range(1501)]


async def test_used_weight_near_the_limit_waits_for_the_next_minute(fake: FakeBinance) -> None:
    waits: list[float] = []
    client = rest(fake, waits)
    fake.weight_used = 4796  # the window's aggTrades (4) reports 4800: 80 % of 6000
    ticks, _ = await fetch(TradePager(client, "BTCUSDT", "trades", at(0), at(1000)))
    assert len(ticks) == 2002
    assert len(waits) == 3  # before each request past the 80 % line: the 3 pages by id
    assert all(0 < wait <= 60.5 for wait in waits)


async def test_a_ban_stops_with_until_when(fake: FakeBinance) -> None:
    fake.fail_next(418, retry_after=120, code=-1003, msg="Way too many requests; IP banned.")
    with pytest.raises(MarketDataError, match=r"banned this IP \(418\) until"):
        await fetch(TradePager(rest(fake, []), "BTCUSDT", "trades", START, None))


async def test_an_unknown_symbol_fails_with_binances_message(fake: FakeBinance) -> None:
    with pytest.raises(MarketDataError, match=r"Binance: Invalid symbol\. \(code -1121\)"):
        await fetch(TradePager(rest(fake, []), "NOPE", "aggTrades", START, None))


@pytest.mark.parametrize(("unit", "micros"), [("microsecond", 123_456), ("millisecond", 123_000)])
async def test_trade_times_come_in_the_unit_asked(
    fake: FakeBinance, unit: str, micros: int
) -> None:
    # A trade Binance's engine timed to the µs: milliseconds answers truncate it.
    when = START + timedelta(hours=5, microseconds=123_456)
    us = ms(when) * 1000 + 456
    fake.record_trade({"e": "trade", "s": "BTCUSDT", "t": 90_000, "p": "1.5", "q": "2",
                       "T": us, "m": False})  # fmt: skip
    fake.record_agg_trade({"e": "aggTrade", "s": "BTCUSDT", "a": 9_000, "p": "1.5", "q": "2",
                           "f": 90_000, "l": 90_000, "T": us, "m": False})  # fmt: skip
    for kind in ("trades", "aggTrades"):
        pager = TradePager(rest(fake, [], unit), "BTCUSDT", kind, when - timedelta(seconds=1),
                           when + timedelta(seconds=1))  # fmt: skip
        ticks, _ = await fetch(pager)
        assert [t.timestamp for t in ticks] == [when.replace(microsecond=micros)], kind
