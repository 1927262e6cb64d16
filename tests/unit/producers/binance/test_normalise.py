"""Normalisation of recorded Binance payloads (tests/fixtures/binance), field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.binance import normalise

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "binance"
RECEIVED = datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_trade_from_a_combined_stream() -> None:
    assert normalise.stream_event(fixture("trade.json"), RECEIVED) == [
        Tick(
            exchange="BINANCE", symbol="BTCUSDT",
            timestamp=datetime(2024, 3, 1, 12, 0, 0, 120000, tzinfo=UTC),
            source="binance.trade", trade_id="3417562101", price=Decimal("61234.56000000"),
            size=Decimal("0.00150000"), side="sell", received_at=RECEIVED,
            extras={"buyer_maker": True, "event_time": 1709294400123},
        )
    ]  # fmt: skip


def test_agg_trade_from_a_plain_stream() -> None:
    assert normalise.stream_event(fixture("aggTrade.json"), RECEIVED) == [
        Tick(
            exchange="BINANCE", symbol="ETHUSDT",
            timestamp=datetime(2024, 3, 1, 12, 0, 0, 198000, tzinfo=UTC),
            source="binance.aggTrade", trade_id="1029384756", price=Decimal("3412.10000000"),
            size=Decimal("1.25000000"), side="buy", received_at=RECEIVED,
            extras={"buyer_maker": False, "first_trade_id": 1500000001,
                    "last_trade_id": 1500000004},
        )
    ]  # fmt: skip


def test_kline() -> None:
    assert normalise.stream_event(fixture("kline.json"), RECEIVED) == [
        Bar(
            exchange="BINANCE", symbol="BTCUSDT", interval="1m",
            timestamp=datetime(2024, 3, 1, 12, 0, tzinfo=UTC), open=Decimal("61200.00000000"),
            high=Decimal("61250.10000000"), low=Decimal("61190.00000000"),
            close=Decimal("61234.56000000"), volume=Decimal("12.34560000"), trade_count=912,
            closed=True, source="binance.kline",
        )
    ]  # fmt: skip


def test_book_ticker_gives_a_bid_and_an_ask_at_arrival_time() -> None:
    bid, ask = normalise.stream_event(fixture("bookTicker.json"), RECEIVED) or []
    assert bid == Tick(
        exchange="BINANCE", symbol="BNBUSDT", timestamp=RECEIVED, source="binance.bookTicker",
        trade_id="400900217:bid", price=Decimal("25.35190000"), size=Decimal("31.21000000"),
        side="bid", received_at=RECEIVED,
    )  # fmt: skip
    assert ask == Tick(
        exchange="BINANCE", symbol="BNBUSDT", timestamp=RECEIVED, source="binance.bookTicker",
        trade_id="400900217:ask", price=Decimal("25.36520000"), size=Decimal("40.66000000"),
        side="ask", received_at=RECEIVED,
    )  # fmt: skip


def test_rest_klines_closed_by_server_time() -> None:
    first, second = fixture("klines_rest.json")
    server_time = datetime(2024, 3, 1, 12, 1, 30, tzinfo=UTC)  # inside the second bar
    bar = normalise.rest_kline("BTCUSDT", "1m", first, server_time)
    assert bar == Bar(
        exchange="BINANCE", symbol="BTCUSDT", interval="1m",
        timestamp=datetime(2024, 3, 1, 12, 0, tzinfo=UTC), open=Decimal("61200.00000000"),
        high=Decimal("61250.10000000"), low=Decimal("61190.00000000"),
        close=Decimal("61234.56000000"), volume=Decimal("12.34560000"), trade_count=912,
        closed=True, source="binance.rest.klines",
    )  # fmt: skip
    assert normalise.rest_kline("BTCUSDT", "1m", second, server_time).closed is False


def test_subscription_replies_carry_no_records() -> None:
    assert normalise.stream_event(fixture("subscribe_reply.json"), RECEIVED) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "q": "1", "T": 1709294400120, "m": True},
         "price"),
        ({"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "abc", "q": "1", "T": 1709294400120,
          "m": True}, "price"),
        ({"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1", "q": "-1", "T": 1709294400120,
          "m": True}, "size"),
        ({"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1", "q": "1", "T": "soon",
          "m": True}, "timestamp"),
        ({"e": "trade", "E": 1, "s": "", "t": 1, "p": "1", "q": "1", "T": 1709294400120,
          "m": True}, "symbol"),
        ({"e": "kline", "k": {"i": "7m"}}, "symbol"),
        ({"e": "depthUpdate"}, "payload"),
        ({"stream": "x", "data": [1, 2]}, "payload"),
    ],
)  # fmt: skip
def test_malformed_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        normalise.stream_event(payload, RECEIVED)
    assert caught.value.field == field


def test_malformed_rest_rows_are_rejected() -> None:
    with pytest.raises(InvalidRecord) as caught:
        normalise.rest_kline("BTCUSDT", "1m", [1, 2], RECEIVED)
    assert caught.value.field == "kline"
    with pytest.raises(InvalidRecord) as bad_interval:
        normalise.rest_kline("BTCUSDT", "7m", fixture("klines_rest.json")[0], RECEIVED)
    assert bad_interval.value.field == "interval"
