from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given

from marketdata.codec import decode, encode_bars
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick, derived_trade_id
from tests.strategies import bars, sample_bar, sample_tick, ticks


def test_tick_key_keeps_trades_that_share_a_millisecond() -> None:
    first = sample_tick(trade_id="1")
    second = sample_tick(trade_id="2")
    assert first.timestamp == second.timestamp
    assert first.key != second.key
    assert first.key == ("BINANCE", "BTCUSDT", first.timestamp, "binance.trade", "1")


def test_bar_key_ignores_the_version_of_the_bar() -> None:
    live = sample_bar(closed=False, close=Decimal("61200.00"))
    final = sample_bar(closed=True)
    assert live.key == final.key == ("BINANCE", "BTCUSDT", "1m", live.timestamp, "binance.kline")


def test_bar_key_tells_a_derived_bar_from_the_venue_bar_of_the_same_minute() -> None:
    derived = sample_bar(source="derived.trades", vwap=Decimal("61220.5"))
    assert derived.key != sample_bar().key
    assert derived.key[:4] == sample_bar().key[:4]


def test_timestamps_in_another_zone_are_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    tick = sample_tick(timestamp=datetime(2024, 3, 1, 13, 0, 0, 5, tzinfo=paris))
    assert tick.timestamp.tzinfo is UTC
    assert tick.timestamp == datetime(2024, 3, 1, 12, 0, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("exchange", "", "non-empty"),
        ("symbol", "", "non-empty"),
        ("symbol", "   ", "non-empty"),
        ("source", "", "non-empty"),
        ("trade_id", "", "non-empty"),
        ("timestamp", datetime(2024, 3, 1, 12, 0), "naive"),
        ("received_at", datetime(2024, 3, 1, 12, 0), "naive"),
        ("timestamp", datetime(1969, 12, 31, tzinfo=UTC), "out of range"),
        ("timestamp", datetime(2100, 1, 1, tzinfo=UTC), "out of range"),
        ("price", Decimal("NaN"), "finite"),
        ("price", Decimal("Infinity"), "finite"),
        ("price", Decimal("-Infinity"), "finite"),
        ("size", Decimal("-0.001"), "negative"),
        ("size", Decimal("sNaN"), "finite"),
    ],
)
def test_invalid_tick_names_the_field(field: str, value: object, problem: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        sample_tick(**{field: value})
    assert caught.value.field == field
    assert problem in str(caught.value)


def test_negative_prices_are_market_data() -> None:
    # Spreads and some futures (WTI, April 2020) trade below zero.
    assert sample_tick(price=Decimal("-37.63")).price == Decimal("-37.63")


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"high": Decimal(1), "low": Decimal(2), "open": Decimal(1), "close": Decimal(1)}, "high",
         "below low"),
        ({"open": Decimal("70000")}, "open", "outside"),
        ({"close": Decimal("1")}, "close", "outside"),
        ({"volume": Decimal("-1")}, "volume", "negative"),
        ({"low": Decimal("NaN")}, "low", "finite"),
        ({"high": Decimal("Infinity")}, "high", "finite"),
        ({"trade_count": -1}, "trade_count", "negative"),
        ({"interval": "1 min"}, "interval", "1s, 5m"),
        ({"interval": "0m"}, "interval", "1s, 5m"),
        ({"symbol": ""}, "symbol", "non-empty"),
        ({"timestamp": datetime(2024, 3, 1)}, "timestamp", "naive"),
        ({"vwap": Decimal("61250.11")}, "vwap", "outside"),
        ({"vwap": Decimal("61189.99")}, "vwap", "outside"),
        ({"vwap": Decimal("NaN")}, "vwap", "finite"),
        ({"vwap": Decimal("1." + "0" * 25)}, "vwap", "after the point"),
        ({"vwap": 61200.5}, "vwap", "Decimal"),
    ],
)  # fmt: skip
def test_invalid_bar_names_the_field(changes: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        sample_bar(**changes)
    assert caught.value.field == field
    assert problem in str(caught.value)


def test_a_bar_vwap_at_either_end_of_its_range_is_valid_and_survives_the_codec() -> None:
    for vwap in (Decimal("61190.00"), Decimal("61250.10"), Decimal("61221.123456789")):
        bar = sample_bar(vwap=vwap)
        [decoded] = decode(encode_bars([bar])).records
        assert decoded == bar
        assert decoded.vwap == vwap
    assert b"vwap" not in encode_bars([sample_bar()])  # absent, not null, when unknown


@given(ticks)
def test_generated_tick_keys_are_hashable_and_in_utc(tick: Tick) -> None:
    assert {tick.key: 1}[tick.key] == 1
    assert tick.key[2] is tick.timestamp
    assert tick.timestamp.tzinfo is UTC


@given(bars())
def test_generated_bars_respect_their_range(bar: Bar) -> None:
    assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


def test_derived_trade_id_is_stable_and_discriminating() -> None:
    assert derived_trade_id("AAPL", 1709294400.5, "189.5", 100) == derived_trade_id(
        "AAPL", 1709294400.5, "189.5", 100
    )
    assert derived_trade_id("AAPL", 1709294400.5, "189.5", 100) != derived_trade_id(
        "AAPL", 1709294400.5, "189.5", 200
    )
    # Field boundaries matter: ("ab", "c") is not ("a", "bc").
    assert derived_trade_id("ab", "c") != derived_trade_id("a", "bc")
    assert derived_trade_id("x").startswith("h:")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"symbol": "BTC\x00USDT"}, "symbol"),
        ({"extras": {"note": "a\x00b"}}, "extras"),
        ({"extras": {"k\x00": 1}}, "extras"),
        ({"extras": {"nested": [{"deep": "\x00"}]}}, "extras"),
        ({"price": Decimal("1e30")}, "price"),
        ({"price": Decimal("-1e30")}, "price"),
        ({"size": Decimal("1e-25")}, "size"),
        ({"price": Decimal("1." + "7" * 20_000)}, "price"),
        ({"price": Decimal("1" * 39)}, "price"),
        ({"symbol": "S" * 129}, "symbol"),
        ({"trade_id": "9" * 2_700}, "trade_id"),
        ({"exchange": "E" * 33}, "exchange"),
        ({"source": "s" * 65}, "source"),
        ({"symbol": "BTC\ud800"}, "symbol"),
        ({"extras": {"k": "\udfff"}}, "extras"),
        ({"extras": {"big": 2**63}}, "extras"),
        ({"extras": {"nan": float("nan")}}, "extras"),
        ({"extras": {"when": datetime(2024, 1, 1, tzinfo=UTC)}}, "extras"),
        ({"extras": {1: "int key"}}, "extras"),
        ({"extras": {"t": "x" * 16_385}}, "extras"),
        ({"extras": {"many": list(range(1_000))}}, "extras"),
        ({"extras": ["not", "an", "object"]}, "extras"),
    ],
)
def test_values_postgresql_cannot_store_are_rejected(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        sample_tick(**changes)
    assert caught.value.field == field


def test_values_at_the_limits_pass() -> None:
    tick = sample_tick(
        price=Decimal("-" + "9" * 29 + "." + "9" * 9),
        size=Decimal("1e-24"),
        symbol="S" * 128,
        trade_id="9" * 256,
        exchange="E" * 32,
        source="s" * 64,
        extras={"t": "x" * 16_000, "i": -(2**63), "f": 1.5, "b": True, "n": None},
    )
    assert tick.size == Decimal("1e-24")
    assert len(tick.trade_id) == 256
    assert sample_tick(price=Decimal("1e29")).price == Decimal("1e29")


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_extras_nesting_is_bounded_without_recursion() -> None:
    assert sample_tick(extras=_nested(8)).extras == _nested(8)
    for depth in (9, 100_000):
        with pytest.raises(InvalidRecord, match="nested deeper than 8"):
            sample_tick(extras=_nested(depth))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exchange", 7),
        ("symbol", None),
        ("symbol", ["BTCUSDT"]),
        ("trade_id", 123),
        ("source", b"binance.trade"),
        ("price", 1.5),
        ("price", "1.5"),
        ("size", 3),
        ("timestamp", 1_709_294_400),
        ("timestamp", "2024-03-01T12:00:00Z"),
        ("received_at", None),
        ("side", "long"),
        ("side", ["buy"]),
        ("extras", "note"),
    ],
)
def test_wrong_types_are_invalid_records_naming_the_field(field: str, value: object) -> None:
    # Producers build records straight from venue payloads: a wrong type must not escape as
    # TypeError or AttributeError.
    with pytest.raises(InvalidRecord) as caught:
        sample_tick(**{field: value})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"interval": ["1m"]}, "interval"),
        ({"interval": "1" * 17 + "m"}, "interval"),
        ({"trade_count": 1.5}, "trade_count"),
        ({"trade_count": True}, "trade_count"),
        ({"trade_count": 2**63}, "trade_count"),
        ({"closed": "yes"}, "closed"),
        ({"open": "61000"}, "open"),
        ({"volume": None}, "volume"),
    ],
)
def test_wrong_bar_types_are_invalid_records(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        sample_bar(**changes)
    assert caught.value.field == field
