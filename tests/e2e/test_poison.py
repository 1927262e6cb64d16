"""One of each poison of issue #14 among 10,000 valid records, every role its own process: every
valid record is stored exactly once, each poison is in md.dlq with a reason, and no role exits."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from marketdata.codec import encode_bars, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE, HEADER_TOPIC
from marketdata.records import Bar, Tick
from marketdata.topics import instrument_key
from sandbox.binance import FakeBinance
from tests import poison
from tests.e2e.conftest import Pipeline
from tests.e2e.timeline import ms, own_minute
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port, read_topic
from tests.integration.sinks.support import publish, tick_messages
from webhook.spool import frame

N = 10_000
TRADES = 200
ALERTS = 5
DEEP_FRAME = '{"stream":"btcusdt@trade","data":' + "[" * 100_000 + "]" * 100_000 + "}"
PER_MESSAGE = 50
EXCHANGE = "POISONED"
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")


def _ticks(t0: datetime) -> list[Tick]:
    return [
        Tick(
            exchange=EXCHANGE, symbol=SYMBOLS[n % 4], timestamp=t0 + timedelta(milliseconds=n),
            source="test.trade", trade_id=str(n), price=Decimal("100.25") + n,
            size=Decimal("0.5"), side="buy", received_at=t0 + timedelta(milliseconds=n + 3),
        )
        for n in range(N)
    ]  # fmt: skip


def _bars(t0: datetime) -> list[Bar]:
    return [
        Bar(
            exchange=EXCHANGE, symbol="AAA", interval="1m", timestamp=t0 + timedelta(minutes=m),
            open=Decimal(10), high=Decimal(12), low=Decimal(9), close=Decimal(11),
            volume=Decimal(5), trade_count=3, closed=True, source="test.kline",
        )
        for m in range(20)
    ]  # fmt: skip


def _poisons(template: dict[str, Any]) -> dict[str, bytes]:
    """The issue's poisons, each a valid tick envelope with one value replaced."""
    record = ("records", 0)
    return {
        "over-long digits": poison.splice(template, (*record, "price"), poison.LONG_DECIMAL),
        "over-long trade_id": poison.splice(template, (*record, "trade_id"), poison.LONG_KEY_TEXT),
        "over-long symbol": poison.splice(template, (*record, "symbol"), poison.LONG_KEY_TEXT),
        "deep nesting": poison.splice(template, (*record, "extras"), poison.DEEP_OBJECTS),
        "deep arrays": poison.DEEP_ARRAYS,
        "µs number as time": poison.splice(template, (*record, "timestamp"), poison.MICROSECONDS),
    }


async def test_poison_is_dead_lettered_and_every_valid_record_stored_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    settings, topics = pipeline.settings, pipeline.settings.topics
    t0 = own_minute()
    fake = FakeBinance(now_ms=ms(t0))
    await fake.start()
    try:
        await _venue_and_webhook_poisons(pipeline, fake, t0, tmp_path)
    finally:
        await fake.aclose()
    ticks, bars = _ticks(t0), _bars(t0)
    template = json.loads(encode_ticks(ticks[:1]))
    poisons = {
        (topic, name): value
        for topic in (topics.ticks_raw, topics.ticks)
        for name, value in _poisons(template).items()
    }
    poisons[(topics.bars_raw, "deep nesting")] = poison.DEEP_ARRAYS
    poisons[(topics.bars, "deep nesting")] = poison.splice(
        json.loads(encode_bars(bars[:1])), ("records", 0, "open"), poison.nested(5_000)
    )
    key = instrument_key(EXCHANGE, "AAA")
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for (topic, _), value in poisons.items():
        by_topic.setdefault(topic, []).append((key, value))
    # Each poison goes first, then valid messages of the same instrument behind it: the issue
    # saw a valid tick vanish right after a poison. Single records first, then batches.
    raw = tick_messages(ticks[:200], 1) + tick_messages(ticks[200:], PER_MESSAGE)
    await publish(settings, topics.ticks_raw, [*by_topic[topics.ticks_raw], *raw])
    await publish(settings, topics.bars_raw, [*by_topic[topics.bars_raw], *_bar_messages(bars)])
    await publish(settings, topics.ticks, by_topic[topics.ticks])
    await publish(settings, topics.bars, by_topic[topics.bars])

    end = t0 + timedelta(hours=1)
    stored = await pipeline.until(
        "SELECT trade_id, price FROM market_data_ticks WHERE exchange = %s"
        " AND timestamp >= %s AND timestamp < %s",
        (EXCHANGE, t0, end),
        N,
        180,
    )
    await asyncio.sleep(3)  # anything stored twice, or late, would show now
    stored = pipeline.query(
        "SELECT trade_id, price FROM market_data_ticks WHERE exchange = %s"
        " AND timestamp >= %s AND timestamp < %s",
        (EXCHANGE, t0, end),
    )
    assert sorted(int(trade_id) for trade_id, _ in stored) == list(range(N))
    assert all(price == Decimal("100.25") + int(trade_id) for trade_id, price in stored)
    stored_bars = pipeline.query(
        "SELECT count(*) FROM market_data_ohlcv WHERE exchange = %s"
        " AND timestamp >= %s AND timestamp < %s",
        (EXCHANGE, t0, end),
    )
    assert stored_bars == [(len(bars),)]

    dead = await read_topic(settings, topics.dlq, until=len(poisons), within=60)
    found: dict[tuple[str, bytes | None], tuple[str, str]] = {}
    for message in dead:
        headers = {name: value.decode() for name, value in message.headers}
        origin = (headers.get(HEADER_TOPIC, ""), message.value)
        found[origin] = (headers[HEADER_STAGE], headers[HEADER_REASON])
    for (topic, name), value in poisons.items():
        assert (topic, value) in found, f"{name} on {topic} is not in md.dlq"
        stage, reason = found[topic, value]
        assert stage == ("processor" if topic in (topics.ticks_raw, topics.bars_raw) else "sink")
        assert reason, f"{name} on {topic} has no reason"
    assert len(dead) == len(poisons) + 1  # and the Binance producer's frame
    deep = [m for m in dead if m.value == DEEP_FRAME.encode()]
    assert len(deep) == 1, "the deeply nested Binance frame is not in md.dlq"
    assert "recursion depth" in dict(deep[0].headers)[HEADER_REASON].decode()
    assert {name: p.poll() for name, p in pipeline.roles.items()} == dict.fromkeys(
        pipeline.roles
    ), "a role exited"


async def _venue_and_webhook_poisons(
    pipeline: Pipeline, fake: FakeBinance, t0: datetime, spool: Path
) -> None:
    """Binance trades stamped in µs with a frame nested 100,000 deep among them, and a webhook
    that opens a spool torn by a crash mid-append: every trade and every spooled alert stored."""
    pipeline.start(
        "binance",
        ["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade"],
        {"BINANCE_API_BASE_URL": fake.rest_url, "BINANCE_STREAM_URL": fake.stream_url},
    )
    await wait_until(lambda: fake.subscriptions >= 1, within=30)
    await asyncio.sleep(0.5)
    t0_us = ms(t0) * 1000
    for n in range(TRADES):
        if n == TRADES // 2:
            await fake.push_raw(DEEP_FRAME)
        await fake.push("btcusdt@trade", _us_trade(t0_us, n))
    _torn_spool(spool, t0)
    pipeline.start(
        "webhook",
        ["webhook"],
        {
            "TRADINGVIEW_HMAC_SECRET": "s" * 32,
            "MDP_WEBHOOK_PORT": str(free_port()),
            "MDP_WEBHOOK_SPOOL_DIR": str(spool),
        },
    )
    trades = await pipeline.ticks(
        "BINANCE", "BTCUSDT", t0, t0 + timedelta(minutes=1), at_least=TRADES, within=120
    )
    assert [(row[0], row[1]) for row in trades] == [
        (str(9000 + n), t0 + timedelta(microseconds=n * 7 + 3)) for n in range(TRADES)
    ]
    stored = await pipeline.ticks(
        "NASDAQ", "SPOOLED", t0, t0 + timedelta(minutes=1), at_least=ALERTS, within=60
    )
    assert [row[0] for row in stored] == [str(n) for n in range(ALERTS)]


def _torn_spool(spool: Path, t0: datetime) -> None:
    """A spool whose last append was cut short by a crash, after five whole alerts."""
    key = instrument_key("NASDAQ", "SPOOLED")
    whole = b"".join(frame(key, encode_ticks([_alert_tick(t0, n)])) for n in range(ALERTS))
    torn = frame(key, encode_ticks([_alert_tick(t0, ALERTS)]))[:-9]
    spool.chmod(0o700)
    (spool / "spool.bin").write_bytes(whole + torn)
    (spool / "spool.bin").chmod(0o600)


def _us_trade(t0_us: int, n: int) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": t0_us + n * 7 + 5,
        "s": "BTCUSDT",
        "t": 9000 + n,
        "p": "61000.50000000",
        "q": "0.00100000",
        "T": t0_us + n * 7 + 3,
        "m": False,
        "M": True,
    }


def _alert_tick(t0: datetime, n: int) -> Tick:
    return Tick(
        exchange="NASDAQ",
        symbol="SPOOLED",
        timestamp=t0 + timedelta(seconds=n),
        source="TradingView",
        trade_id=str(n),
        price=Decimal("190.5"),
        size=Decimal(1),
        side="buy",
        received_at=t0 + timedelta(seconds=n),
    )


def _bar_messages(bars: list[Bar]) -> list[tuple[bytes | None, bytes]]:
    return [(instrument_key(b.exchange, b.symbol), encode_bars([b])) for b in bars]
