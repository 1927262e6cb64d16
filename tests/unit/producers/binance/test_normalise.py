"""Normalisation of recorded Binance payloads (sandbox/fixtures/binance), field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.binance import normalise
from sandbox import FIXTURES as RECORDINGS

FIXTURES = RECORDINGS / "binance"
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


def test_book_ticker_without_a_clock_gives_a_bid_and_an_ask_at_arrival_time() -> None:
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


def test_book_ticker_copies_stamped_by_the_clock_have_one_key() -> None:
    first_seen: dict[tuple[str, int], datetime] = {}

    def clock(symbol: str, update: int, received_at: datetime) -> datetime:
        return first_seen.setdefault((symbol, update), received_at)

    frame = fixture("bookTicker.json")
    once = normalise.stream_event(frame, RECEIVED, clock) or []
    again = normalise.stream_event(frame, RECEIVED + timedelta(milliseconds=3), clock) or []
    assert [t.key for t in once] == [t.key for t in again]
    assert [t.key for t in once] == [
        ("BINANCE", "BNBUSDT", RECEIVED, "binance.bookTicker", "400900217:bid"),
        ("BINANCE", "BNBUSDT", RECEIVED, "binance.bookTicker", "400900217:ask"),
    ]
    assert isinstance(again[0], Tick)
    assert again[0].received_at == RECEIVED + timedelta(milliseconds=3)  # arrival kept apart


def test_book_ticker_with_a_transaction_time_is_stamped_with_it() -> None:
    frame = {**fixture("bookTicker.json"), "E": 1709294400200, "T": 1709294400198}
    bid, ask = normalise.stream_event(frame, RECEIVED, lambda *_: RECEIVED) or []
    assert bid.timestamp == ask.timestamp == datetime(2024, 3, 1, 12, 0, 0, 198000, tzinfo=UTC)


def _in_microseconds(payload: Any, keys: tuple[str, ...]) -> Any:
    return {k: v * 1000 + 7 if k in keys else v for k, v in payload.items()}


def test_microsecond_stream_frames_keep_their_microseconds() -> None:
    trade = fixture("trade.json")
    trade["data"] = _in_microseconds(trade["data"], ("T", "E"))
    agg = _in_microseconds(fixture("aggTrade.json"), ("T", "E"))
    kline = fixture("kline.json")
    kline["data"]["k"] = _in_microseconds(kline["data"]["k"], ("t", "T"))
    [tick] = normalise.stream_event(trade, RECEIVED) or []
    assert isinstance(tick, Tick)
    assert tick.timestamp == datetime(2024, 3, 1, 12, 0, 0, 120007, tzinfo=UTC)
    assert tick.extras == {"buyer_maker": True, "event_time": 1709294400123007}
    [agg_tick] = normalise.stream_event(agg, RECEIVED) or []
    assert agg_tick.timestamp == datetime(2024, 3, 1, 12, 0, 0, 198007, tzinfo=UTC)
    [bar] = normalise.stream_event(kline, RECEIVED) or []
    assert bar.timestamp == datetime(2024, 3, 1, 12, 0, 0, 7, tzinfo=UTC)


def test_microsecond_rest_and_dump_rows() -> None:
    row = fixture("klines_rest.json")[0]
    micro = [row[0] * 1000, *row[1:6], row[6] * 1000 + 999, *row[7:]]
    bar = normalise.rest_kline("BTCUSDT", "1m", micro, datetime(2024, 3, 1, 13, tzinfo=UTC))
    assert (bar.timestamp, bar.closed) == (datetime(2024, 3, 1, 12, 0, tzinfo=UTC), True)
    # A klines dump row is CSV text: microseconds since 2025-01-01.
    dump = ["1735689600000000", "93576.00", "93610.93", "93537.50", "93610.93", "8.21827",
            "1735689659999999", "768978.9", "2465", "3.90", "365000.0", "0"]  # fmt: skip
    dumped = normalise.rest_kline("BTCUSDT", "1m", dump, datetime(2025, 1, 2, tzinfo=UTC))
    assert (dumped.timestamp, dumped.trade_count) == (datetime(2025, 1, 1, tzinfo=UTC), 2465)
    [trade] = fixture("historicalTrades_rest.json")
    tick = normalise.rest_trade("BTCUSDT", {**trade, "time": trade["time"] * 1000 + 1}, RECEIVED)
    assert tick.timestamp == datetime(2017, 7, 12, 13, 19, 9, 590001, tzinfo=UTC)


def test_rest_trade_is_the_record_of_its_stream_event() -> None:
    [row] = fixture("historicalTrades_rest.json")
    assert normalise.rest_trade("BNBBTC", row, RECEIVED) == Tick(
        exchange="BINANCE", symbol="BNBBTC",
        timestamp=datetime(2017, 7, 12, 13, 19, 9, 590000, tzinfo=UTC),
        source="binance.trade", trade_id="28457", price=Decimal("4.00000100"),
        size=Decimal("12.00000000"), side="sell", received_at=RECEIVED,
        extras={"buyer_maker": True},
    )  # fmt: skip


def test_rest_agg_trade_has_the_key_of_its_stream_event() -> None:
    [row] = fixture("aggTrades_rest.json")
    tick = normalise.rest_agg_trade("BNBBTC", row, RECEIVED)
    assert tick == Tick(
        exchange="BINANCE", symbol="BNBBTC",
        timestamp=datetime(2017, 6, 30, 3, 35, 9, 153000, tzinfo=UTC),
        source="binance.aggTrade", trade_id="26129", price=Decimal("0.01633102"),
        size=Decimal("4.70443515"), side="sell", received_at=RECEIVED,
        extras={"buyer_maker": True, "first_trade_id": 27781, "last_trade_id": 27781},
    )  # fmt: skip
    event = {"e": "aggTrade", "E": 1498793709155, "s": "BNBBTC", **row}
    [streamed] = normalise.stream_event(event, RECEIVED) or []
    assert streamed == tick


def test_rest_klines_closed_by_server_time() -> None:
    first, second = fixture("klines_rest.json")
    server_time = datetime(2024, 3, 1, 12, 1, 30, tzinfo=UTC)  # inside the second bar
    bar = normalise.rest_kline("BTCUSDT", "1m", first, server_time)
    assert bar == Bar(
        exchange="BINANCE", symbol="BTCUSDT", interval="1m",
        timestamp=datetime(2024, 3, 1, 12, 0, tzinfo=UTC), open=Decimal("61200.00000000"),
        high=Decimal("61250.10000000"), low=Decimal("61190.00000000"),
        close=Decimal("61234.56000000"), volume=Decimal("12.34560000"), trade_count=912,
        closed=True, source="binance.kline",
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
