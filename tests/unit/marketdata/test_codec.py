from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.codec import BarBatch, Batch, TickBatch, decode, encode_bars, encode_ticks
from marketdata.errors import DecodeError, InvalidRecord
from marketdata.records import Bar, Tick
from tests.strategies import bars, sample_bar, sample_tick, ticks


@pytest.mark.parametrize(
    ("records_of", "encode", "kind"),
    [(ticks, encode_ticks, TickBatch), (bars(), encode_bars, BarBatch)],
)
@given(data=st.data())
def test_batches_round_trip_exactly(
    records_of: st.SearchStrategy[Tick | Bar],
    encode: Callable[[list[Any]], bytes],
    kind: type[Batch],
    data: st.DataObject,
) -> None:
    records = data.draw(st.lists(records_of, min_size=1, max_size=5))
    wire = encode(records)
    batch = decode(wire)
    assert type(batch) is kind
    assert batch.records == records
    assert encode(batch.records) == wire


def test_wire_format_is_compact_versioned_json() -> None:
    data = encode_ticks([sample_tick()])
    assert b" " not in data
    document = json.loads(data)
    assert document["kind"] == "ticks"
    assert document["v"] == 1
    assert document["records"][0] == {
        "exchange": "BINANCE",
        "symbol": "BTCUSDT",
        "timestamp": "2024-03-01T12:00:00.123456Z",
        "source": "binance.trade",
        "trade_id": "3417562101",
        "price": "61234.56000000",
        "size": "0.00150000",
        "side": "sell",
        "received_at": "2024-03-01T12:00:00.130001Z",
        "extras": {"buyer_maker": True},
    }


def _tick_json(**changes: object) -> bytes:
    record = json.loads(encode_ticks([sample_tick()]))
    record["records"][0].update(changes)
    return json.dumps(record).encode()


def _bar_json(**changes: object) -> bytes:
    record = json.loads(encode_bars([sample_bar()]))
    record["records"][0].update(changes)
    return json.dumps(record).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"\x00\xff garbage", "malformed JSON"),
        (b'{"kind":"ticks","v":1,"records":[', "malformed JSON"),
        (b'{"kind":"quotes","v":1,"records":[]}', "invalid record"),
        (b'{"v":1,"records":[]}', "kind"),
        (b'{"kind":"ticks","v":2,"records":[]}', "schema version 2"),
        (b'{"kind":"ticks","v":1,"records":[]}', "no records"),
        (_tick_json(price="NaN"), "price"),
        (_tick_json(price="Infinity"), "price"),
        (_tick_json(size="-1"), "size"),
        (_tick_json(size=-1), "size"),
        (_tick_json(timestamp="2024-03-01T12:00:00"), "timestamp"),
        (_tick_json(timestamp="2124-03-01T12:00:00Z"), "timestamp"),
        (_tick_json(symbol=""), "symbol"),
        (_tick_json(side="long"), "side"),
        (_tick_json(trade_id=None), "trade_id"),
        (_bar_json(high="1", low="2"), "high"),
        (_bar_json(volume="-3"), "volume"),
        (_bar_json(interval="soon"), "interval"),
    ],
)
def test_undecodable_messages_raise_with_a_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert reason in caught.value.reason


def test_numbers_are_accepted_as_json_numbers_too() -> None:
    batch = decode(_tick_json(price=61234.5, size=2))
    assert isinstance(batch, TickBatch)
    assert batch.records[0].price == Decimal("61234.5")
    assert batch.records[0].size == Decimal(2)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"\w"):
        decode(data)


def _invalid_values() -> st.SearchStrategy[tuple[str, object]]:
    """(field, value) pairs that break the contract, drawn across each kind of breakage."""
    blank = st.text(alphabet=" \t\n", max_size=3)
    naive = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1))
    too_early = st.datetimes(max_value=datetime(1969, 12, 31), timezones=st.just(UTC))
    too_late = st.datetimes(min_value=datetime(2100, 1, 1), timezones=st.just(UTC))
    not_finite = st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
    negative = st.decimals(max_value=Decimal("-1e-8"), allow_nan=False, allow_infinity=False)
    return st.one_of(
        st.tuples(st.sampled_from(["exchange", "symbol", "source", "trade_id"]), blank),
        st.tuples(st.sampled_from(["timestamp", "received_at"]), naive | too_early | too_late),
        st.tuples(st.just("price"), not_finite),
        st.tuples(st.just("size"), not_finite | negative),
    )


@given(ticks, _invalid_values())
def test_every_invalid_tick_is_rejected_naming_the_field(
    tick: Tick, invalid: tuple[str, object]
) -> None:
    field, value = invalid
    with pytest.raises(InvalidRecord) as built:
        msgspec.structs.replace(tick, **{field: value})
    assert built.value.field == field

    document = json.loads(encode_ticks([tick]))
    document["records"][0][field] = value.isoformat() if isinstance(value, datetime) else str(value)
    with pytest.raises(DecodeError) as decoded:
        decode(json.dumps(document).encode())
    assert f"{field}:" in decoded.value.reason


@given(bars(), st.data())
def test_every_invalid_bar_is_rejected_naming_the_field(bar: Bar, data: st.DataObject) -> None:
    positive = st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e6"), places=8)
    above = bar.high + data.draw(positive)
    breakages: list[tuple[str, object]] = [
        ("volume", -data.draw(positive)),
        (data.draw(st.sampled_from(["open", "high", "low", "close"])), Decimal("NaN")),
        (data.draw(st.sampled_from(["open", "close"])), above),
        ("low", above),  # now above high: high < low
        ("interval", data.draw(st.sampled_from(["", "1", "m1", "1 min", "0s", "5x"]))),
        ("trade_count", -data.draw(st.integers(1, 2**31))),
    ]
    field, value = data.draw(st.sampled_from(breakages))
    with pytest.raises(InvalidRecord) as built:
        msgspec.structs.replace(bar, **{field: value})
    culprit = "high" if field == "low" else field
    assert built.value.field in {field, culprit}

    document = json.loads(encode_bars([bar]))
    document["records"][0][field] = value if isinstance(value, int) else str(value)
    with pytest.raises(DecodeError) as decoded:
        decode(json.dumps(document).encode())
    assert f"{built.value.field}:" in decoded.value.reason
