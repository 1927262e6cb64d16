"""Structure-aware mutations of recorded DTC messages (sandbox/fixtures/dtc) in both encodings,
through the decoders and the normalisers: the only outcomes are records, a ``DtcDecodeError``
or an ``InvalidRecord``; and garbage next to valid frames costs only the garbage."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.dtc import messages as m
from producers.dtc import normalise
from producers.dtc.codec import (
    BinaryFramer,
    DtcDecodeError,
    DtcFramingError,
    JsonFramer,
    Message,
    decode_binary,
    decode_json,
    encode_binary,
    encode_json,
)
from producers.dtc.normalise import Instrument, Occurrences
from sandbox.dtc import bar_record, fixture, fixture_trades

ES = Instrument("ESZ4", "CME")
RECEIVED = datetime(2024, 3, 1, 14, 30, 5, tzinfo=UTC)
_TRADE = fixture_trades()[3]
_SNAPSHOT = fixture("ESZ4_snapshot.json")["snapshot"]
# Recorded messages, and the other market-data types built from their values.
BASES: list[dict[str, Any]] = [
    {"Type": m.MARKET_DATA_UPDATE_TRADE, "SymbolID": 1, **_TRADE},
    {"Type": m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE, "RequestID": 1, **_TRADE},
    {**_SNAPSHOT, "SymbolID": 1},
    {"Type": m.MARKET_DATA_UPDATE_TRADE_COMPACT, "SymbolID": 1, "Price": _TRADE["Price"],
     "Volume": _TRADE["Volume"], "DateTime": int(_TRADE["DateTime"]), "AtBidOrAsk": 1},
    {"Type": m.MARKET_DATA_UPDATE_BID_ASK, "SymbolID": 1, "BidPrice": _SNAPSHOT["BidPrice"],
     "BidQuantity": 24.0, "AskPrice": _SNAPSHOT["AskPrice"], "AskQuantity": 31.0,
     "DateTime": 1709303401},
    {"Type": m.MARKET_DATA_UPDATE_BID_ASK_COMPACT, "SymbolID": 1, "BidPrice": 5123.5,
     "BidQuantity": 9.0, "AskPrice": 5123.75, "AskQuantity": 4.0, "DateTime": 1709303401},
    {**bar_record("ESZ4", 60, 1709303400), "RequestID": 1},
    # The current header's variants (navas8889/dtc-sdk @40077a08), from the same values.
    {"Type": m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2, "SymbolID": 1,
     "Price": _TRADE["Price"], "Volume": 2, "DateTime": int(_TRADE["DateTime"] * 1_000_000),
     "AtBidOrAsk": 2},
    {"Type": m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR, "SymbolID": 1,
     "Price": _TRADE["Price"], "Volume": 2, "DateTime": _TRADE["DateTime"], "AtBidOrAsk": 1},
    {"Type": m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP, "SymbolID": 1, "Price": _TRADE["Price"],
     "Volume": 2, "AtBidOrAsk": 1},
    {"Type": m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT, "SymbolID": 1,
     "LastTradePrice": _SNAPSHOT["LastTradePrice"], "LastTradeVolume": 2.0,
     "LastTradeDateTime": _SNAPSHOT["LastTradeDateTime"]},
    {"Type": m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS, "SymbolID": 1,
     "BidPrice": 5123.5, "BidQuantity": 9.0, "AskPrice": 5123.75, "AskQuantity": 4.0,
     "DateTime": 1709303401_250000},
    {"Type": m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP, "SymbolID": 1, "BidPrice": 5123.5,
     "BidQuantity": 9, "AskPrice": 5123.75, "AskQuantity": 4},
    {"Type": m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER, "RequestID": 1,
     "FinalRecordLastDateTime": 1709303400_000000},
]  # fmt: skip


def _no_records(trailer: Message) -> list[Tick | Bar]:
    normalise.trailer_time(trailer)  # a time, None or the documented error; never a record
    return []


# The producers' normalisers, by type.
_NORMALISERS: dict[int, Any] = {
    m.MARKET_DATA_UPDATE_TRADE: normalise.trade,
    m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE: normalise.trade,
    m.MARKET_DATA_UPDATE_TRADE_COMPACT: normalise.trade_compact,
    m.MARKET_DATA_UPDATE_BID_ASK: normalise.bid_ask,
    m.MARKET_DATA_UPDATE_BID_ASK_COMPACT: lambda msg, ins, at, occ: normalise.bid_ask(
        msg, ins, at, occ, single=True
    ),
    m.MARKET_DATA_SNAPSHOT: normalise.snapshot,
    m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE: lambda msg, ins, at, _: normalise.history_bar(
        msg, ins, "1m", at
    ),
    m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER: lambda msg, *_: _no_records(msg),
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2: normalise.trade_unbundled,
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR: normalise.trade_unbundled_ms,
    m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP: normalise.trade_no_timestamp,
    m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT: normalise.last_trade_snapshot,
    m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS: normalise.bid_ask_us,
    m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP: normalise.bid_ask_no_timestamp,
}
_EARLIER = datetime(2024, 3, 1, 14, 29, tzinfo=UTC)


def normalised(message: Message) -> list[Tick | Bar]:
    """What the producers do with a decoded message."""
    type_, occurrences = message["Type"], Occurrences()
    # A session's earlier trade and quote: what 142 and 143 take their time from.
    occurrences.saw(ES.symbol, normalise.TRADE, _EARLIER)
    occurrences.saw(ES.symbol, normalise.QUOTE, _EARLIER)
    normaliser = _NORMALISERS.get(type_)
    if normaliser is None:
        return []
    result = normaliser(message, ES, RECEIVED, occurrences)
    return result if isinstance(result, list) else [result]


def outcome(decode: Any, frame: bytes) -> list[Tick | Bar] | Exception:
    """Records, or the documented error; anything else fails the test."""
    try:
        return normalised(decode(frame))
    except (DtcDecodeError, InvalidRecord) as exc:
        return exc


def test_the_bases_are_valid_in_both_encodings() -> None:
    for base in BASES:
        binary = outcome(decode_binary, encode_binary(base))
        text = outcome(decode_json, encode_json(base))
        assert isinstance(binary, list)
        assert binary or base["Type"] == m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER  # no records
        assert binary == text or base["Type"] in (112, 117)  # float32 vs double in JSON


# JSON: a field's value replaced by any JSON text, hostile ones included ----------------------

_NUMBERS = st.sampled_from([
    0, -1, 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64, 10**30, 10**400, -(10**400), 1e308, -1e308,
    3.4028234663852886e38, 3.5e38, 5e-324, 1709303400.123, 1709303400123, 1709303400123456,
    1709303400123456789, 4102444800, 4102444799.999, -0.0,
])  # fmt: skip
_RAW = st.one_of(
    _NUMBERS.map(lambda v: str(v).encode()),
    st.integers().map(lambda v: str(v).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: json.dumps(v).encode()),
    st.text(max_size=30).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"true", b"null", b"[]", b"{}", b'"\\ud800"', b'"\xff\xfe"', b"1e400",
                     b"-", b"NaN", b"Infinity", b'"' + b"x" * 20_000 + b'"']),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 20_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 5_000).map(lambda n: b"9" * n),
)  # fmt: skip


def _json_body(message: dict[str, Any], replaced: dict[str, bytes]) -> bytes:
    items = [json.dumps(k).encode() + b":" + replaced.get(k, json.dumps(v).encode())
             for k, v in message.items()]  # fmt: skip
    items += [json.dumps(k).encode() + b":" + v for k, v in replaced.items() if k not in message]
    return b"{" + b",".join(items) + b"}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_json_mutations_of_recorded_messages_give_records_or_the_documented_errors(
    data: st.DataObject,
) -> None:
    base = data.draw(st.sampled_from(BASES))
    names = ["Type", *m.SPECS[base["Type"]].names, "Extra"]
    fields = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    replaced = {name: data.draw(_RAW) for name in fields}
    result = outcome(decode_json, _json_body(base, replaced))
    assert isinstance(result, list | DtcDecodeError | InvalidRecord)


# Binary: fields overwritten with any bits, Size and Type forged, messages cut ----------------


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_binary_mutations_of_recorded_messages_give_records_or_the_documented_errors(
    data: st.DataObject,
) -> None:
    base = data.draw(st.sampled_from(BASES))
    spec = m.SPECS[base["Type"]]
    frame = bytearray(encode_binary(base))
    for field in data.draw(st.lists(st.sampled_from(spec.fields), max_size=4, unique=True)):
        frame[field.offset : field.end] = data.draw(st.binary(min_size=field.size,
                                                              max_size=field.size))  # fmt: skip
    cut = data.draw(st.integers(0, len(frame)))
    frame = frame[:cut]
    if len(frame) >= 2:
        struct.pack_into("<H", frame, 0, data.draw(st.sampled_from([cut, 0, 3, 4, 65535])))
    if len(frame) >= 4 and data.draw(st.booleans()):
        struct.pack_into("<H", frame, 2, data.draw(st.sampled_from([*m.SPECS, 9999, 113])))
    result = outcome(decode_binary, bytes(frame))
    assert isinstance(result, list | DtcDecodeError | InvalidRecord)


# Framing: garbage costs only the garbage -------------------------------------------------------

_FRAMES = st.lists(st.sampled_from(BASES), min_size=1, max_size=6)
_SPLITS = st.lists(st.integers(1, 400), max_size=12)


def _chunks(stream: bytes, splits: list[int]) -> list[bytes]:
    chunks, position = [], 0
    for size in splits:
        chunks.append(stream[position : position + size])
        position += size
    return [*chunks, stream[position:]]


@settings(max_examples=300, deadline=None)
@given(_FRAMES, st.binary(max_size=200), st.sampled_from([0, 1, 3, 16 * 1024 + 1, 65535]),
       _FRAMES, _SPLITS)  # fmt: skip
def test_binary_frames_before_garbage_are_delivered_whatever_the_reads(
    before: list[dict[str, Any]], junk: bytes, size: int, after: list[dict[str, Any]],
    splits: list[int],
) -> None:  # fmt: skip
    valid = [encode_binary(message) for message in before]
    garbage = struct.pack("<HH", size, m.MARKET_DATA_UPDATE_TRADE) + junk
    stream = b"".join(valid) + garbage + b"".join(encode_binary(x) for x in after)
    framer = BinaryFramer()
    frames: list[bytes] = []

    def read_all() -> None:
        for chunk in [*_chunks(stream, splits), b""]:
            frames.extend(framer.feed(chunk))

    with pytest.raises(DtcFramingError, match=f"message size {size} outside"):
        read_all()
    assert frames == valid
    rest = framer.rest()  # the dead letter: from the garbage on, as far as it was read
    assert len(rest) >= 4
    assert stream[len(b"".join(valid)) :].startswith(rest)


@settings(max_examples=300, deadline=None)
@given(_FRAMES, st.binary(max_size=300).map(lambda b: b.replace(b"\0", b"")), _FRAMES, _SPLITS)
def test_json_frames_around_garbage_are_all_delivered_whatever_the_reads(
    before: list[dict[str, Any]], junk: bytes, after: list[dict[str, Any]], splits: list[int]
) -> None:
    valid = [encode_json(message) for message in [*before, *after]]
    stream = b"".join(valid[: len(before)]) + junk + b"\0" + b"".join(valid[len(before) :])
    framer, frames = JsonFramer(), []
    for chunk in _chunks(stream, splits):
        frames += framer.feed(chunk)
    cut = [frame[:-1] for frame in valid]
    assert frames == [*cut[: len(before)], *([junk] if junk else []), *cut[len(before) :]]
    assert framer.pending == 0
    for frame in cut:
        assert isinstance(normalised(decode_json(frame)), list)
