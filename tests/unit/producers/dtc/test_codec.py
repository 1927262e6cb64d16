"""Encoding and decoding every message in both encodings, against byte vectors laid out by hand
from DTCProtocol.h (offsets as in test_messages.py), not from the message table."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest

from producers.dtc import messages as m
from producers.dtc.codec import (
    BinaryFramer,
    DtcDecodeError,
    DtcFramingError,
    Inflater,
    JsonFramer,
    UnhandledMessageType,
    UnknownMessageType,
    decode_binary,
    decode_json,
    encode_binary,
    encode_json,
)

# (type, sizeof, fields, [(offset, struct code, value)]) for every message the client speaks.
VECTORS: list[tuple[int, int, dict[str, Any], list[tuple[int, str, Any]]]] = [
    (m.ENCODING_REQUEST, 16, {"ProtocolVersion": 8, "Encoding": 2, "ProtocolType": "DTC"},
     [(4, "i", 8), (8, "i", 2), (12, "4s", b"DTC")]),
    (m.ENCODING_RESPONSE, 16, {"ProtocolVersion": 8, "Encoding": 0, "ProtocolType": "DTC"},
     [(4, "i", 8), (8, "i", 0), (12, "4s", b"DTC")]),
    (m.LOGON_REQUEST, 280,
     {"ProtocolVersion": 8, "Username": "trader", "Password": "s3cret", "GeneralTextData": "",
      "Integer_1": 0, "Integer_2": 0, "HeartbeatIntervalInSeconds": 10, "TradeMode": 0,
      "TradeAccount": "", "HardwareIdentifier": "", "ClientName": "mdp"},
     [(4, "i", 8), (8, "32s", b"trader"), (40, "32s", b"s3cret"), (144, "i", 10),
      (248, "32s", b"mdp")]),
    (m.LOGON_RESPONSE, 256,
     {"ProtocolVersion": 8, "Result": 1, "ResultText": "Logon OK", "ReconnectAddress": "",
      "Integer_1": 0, "ServerName": "SC DTC", "MarketDepthUpdatesBestBidAndAsk": 0,
      "TradingIsSupported": 0, "OCOOrdersSupported": 0, "OrderCancelReplaceSupported": 1,
      "SymbolExchangeDelimiter": "-", "SecurityDefinitionsSupported": 0,
      "HistoricalPriceDataSupported": 1, "ResubscribeWhenMarketDataFeedAvailable": 1,
      "MarketDepthIsSupported": 1, "OneHistoricalPriceDataRequestPerConnection": 1,
      "BracketOrdersSupported": 0, "UseIntegerPriceOrderMessages": 0,
      "UsesMultiplePositionsPerSymbolAndTradeAccount": 0, "MarketDataSupported": 1},
     [(4, "i", 8), (8, "i", 1), (12, "96s", b"Logon OK"), (176, "60s", b"SC DTC"),
      (239, "B", 1), (240, "4s", b"-"), (245, "B", 1), (246, "B", 1), (247, "B", 1),
      (248, "B", 1), (252, "B", 1)]),
    (m.HEARTBEAT, 16, {"NumDroppedMessages": 3, "CurrentDateTime": 1709303400},
     [(4, "I", 3), (8, "q", 1709303400)]),
    (m.LOGOFF, 102, {"Reason": "maintenance", "DoNotReconnect": 1},
     [(4, "96s", b"maintenance"), (100, "B", 1)]),
    (m.MARKET_DATA_FEED_STATUS, 8, {"Status": 2}, [(4, "i", 2)]),
    (m.MARKET_DATA_REQUEST, 96,
     {"RequestAction": 1, "SymbolID": 7, "Symbol": "ESZ4", "Exchange": "CME",
      "IntervalForSnapshotUpdatesInMilliseconds": 0},
     [(4, "i", 1), (8, "I", 7), (12, "64s", b"ESZ4"), (76, "16s", b"CME")]),
    (m.MARKET_DATA_REJECT, 104, {"SymbolID": 7, "RejectText": "Symbol not found"},
     [(4, "I", 7), (8, "96s", b"Symbol not found")]),
    (m.MARKET_DATA_SNAPSHOT, 144,
     {"SymbolID": 7, "SessionSettlementPrice": 5110.5, "SessionOpenPrice": 5115.0,
      "SessionHighPrice": 5130.75, "SessionLowPrice": 5101.25, "SessionVolume": 1234567.0,
      "SessionNumTrades": 98765, "OpenInterest": 2200345, "BidPrice": 5123.0,
      "AskPrice": 5123.25, "AskQuantity": 31.0, "BidQuantity": 24.0, "LastTradePrice": 5123.25,
      "LastTradeVolume": 2.0, "LastTradeDateTime": 1709303399.875,
      "BidAskDateTime": 1709303399.9, "SessionSettlementDateTime": 1709251200,
      "TradingSessionDate": 1709251200, "TradingStatus": 2,
      "MarketDepthUpdateDateTime": 1709303399.9},
     [(4, "I", 7), (8, "d", 5110.5), (16, "d", 5115.0), (24, "d", 5130.75), (32, "d", 5101.25),
      (40, "d", 1234567.0), (48, "I", 98765), (52, "I", 2200345), (56, "d", 5123.0),
      (64, "d", 5123.25), (72, "d", 31.0), (80, "d", 24.0), (88, "d", 5123.25), (96, "d", 2.0),
      (104, "d", 1709303399.875), (112, "d", 1709303399.9), (120, "I", 1709251200),
      (124, "I", 1709251200), (128, "b", 2), (136, "d", 1709303399.9)]),
    (m.MARKET_DATA_UPDATE_TRADE, 40,
     {"SymbolID": 7, "AtBidOrAsk": 2, "Price": 5123.25, "Volume": 3.0,
      "DateTime": 1709303400.123},
     [(4, "I", 7), (8, "H", 2), (16, "d", 5123.25), (24, "d", 3.0), (32, "d", 1709303400.123)]),
    (m.MARKET_DATA_UPDATE_TRADE_COMPACT, 24,
     {"Price": 5123.25, "Volume": 3.0, "DateTime": 1709303400, "SymbolID": 7, "AtBidOrAsk": 1},
     [(4, "f", 5123.25), (8, "f", 3.0), (12, "I", 1709303400), (16, "I", 7), (20, "H", 1)]),
    (m.MARKET_DATA_UPDATE_BID_ASK, 40,
     {"SymbolID": 7, "BidPrice": 5123.0, "BidQuantity": 24.0, "AskPrice": 5123.25,
      "AskQuantity": 31.0, "DateTime": 1709303400},
     [(4, "I", 7), (8, "d", 5123.0), (16, "f", 24.0), (24, "d", 5123.25), (32, "f", 31.0),
      (36, "I", 1709303400)]),
    (m.MARKET_DATA_UPDATE_BID_ASK_COMPACT, 28,
     {"BidPrice": 5123.0, "BidQuantity": 24.0, "AskPrice": 5123.25, "AskQuantity": 31.0,
      "DateTime": 1709303400, "SymbolID": 7},
     [(4, "f", 5123.0), (8, "f", 24.0), (12, "f", 5123.25), (16, "f", 31.0),
      (20, "I", 1709303400), (24, "I", 7)]),
    # The current header's pack(1) structs (navas8889/dtc-sdk @40077a08, DTC/DTCProtocol.h:
    # s_MarketDataUpdateBidAskFloatWithMicroseconds, s_MarketDataUpdateTradeWithUnbundledIndicator2)
    (m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS, 32,
     {"SymbolID": 7, "BidPrice": 5123.0, "BidQuantity": 24.0, "AskPrice": 5123.25,
      "AskQuantity": 31.0, "DateTime": 1709303400_123456},
     [(4, "I", 7), (8, "f", 5123.0), (12, "f", 24.0), (16, "f", 5123.25), (20, "f", 31.0),
      (24, "q", 1709303400_123456)]),
    (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2, 27,
     {"SymbolID": 7, "Price": 5123.25, "Volume": 3, "DateTime": 1709303400_123456,
      "AtBidOrAsk": 2, "UnbundledTradeIndicator": 1, "TradeCondition": 0},
     [(4, "I", 7), (8, "f", 5123.25), (12, "I", 3), (16, "q", 1709303400_123456),
      (24, "B", 2), (25, "b", 1), (26, "b", 0)]),
    # Same header: s_MarketDataUpdateTradeNoTimestamp and s_MarketDataUpdateBidAskNoTimeStamp
    # (pack(1)), s_MarketDataUpdateTradeWithUnbundledIndicator and
    # s_MarketDataUpdateLastTradeSnapshot (pack(8)), s_HistoricalPriceDataResponseTrailer.
    (m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP, 19,
     {"SymbolID": 7, "Price": 5123.25, "Volume": 3, "AtBidOrAsk": 1,
      "UnbundledTradeIndicator": 2, "TradeCondition": 1},
     [(4, "I", 7), (8, "f", 5123.25), (12, "I", 3), (16, "B", 1), (17, "b", 2), (18, "b", 1)]),
    (m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP, 24,
     {"SymbolID": 7, "BidPrice": 5123.0, "BidQuantity": 24, "AskPrice": 5123.25,
      "AskQuantity": 31},
     [(4, "I", 7), (8, "f", 5123.0), (12, "I", 24), (16, "f", 5123.25), (20, "I", 31)]),
    (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR, 40,
     {"SymbolID": 7, "AtBidOrAsk": 2, "UnbundledTradeIndicator": 1, "TradeCondition": 2,
      "Reserve_1": 0, "Reserve_2": 0, "Price": 5123.25, "Volume": 4, "Reserve_3": 0,
      "DateTime": 1709303400.123},
     [(4, "I", 7), (8, "B", 2), (9, "b", 1), (10, "B", 2), (16, "d", 5123.25), (24, "I", 4),
      (32, "d", 1709303400.123)]),
    (m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT, 32,
     {"SymbolID": 7, "LastTradePrice": 5123.25, "LastTradeVolume": 2.0,
      "LastTradeDateTime": 1709303399.875},
     [(4, "I", 7), (8, "d", 5123.25), (16, "d", 2.0), (24, "d", 1709303399.875)]),
    (m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER, 16,
     {"RequestID": 1, "FinalRecordLastDateTime": 1709303400_000000},
     [(4, "i", 1), (8, "q", 1709303400_000000)]),
    (m.HISTORICAL_PRICE_DATA_REQUEST, 120,
     {"RequestID": 1, "Symbol": "ESZ4", "Exchange": "CME", "RecordInterval": 60,
      "StartDateTime": 1709251200, "EndDateTime": 1709337600, "MaxDaysToReturn": 0,
      "UseZLibCompression": 1, "RequestDividendAdjustedStockData": 0, "Flag_1": 0},
     [(4, "i", 1), (8, "64s", b"ESZ4"), (72, "16s", b"CME"), (88, "i", 60),
      (96, "q", 1709251200), (104, "q", 1709337600), (116, "B", 1)]),
    (m.HISTORICAL_PRICE_DATA_RESPONSE_HEADER, 20,
     {"RequestID": 1, "RecordInterval": 60, "UseZLibCompression": 1, "NoRecordsToReturn": 0,
      "IntToFloatPriceDivisor": 0.25},
     [(4, "i", 1), (8, "i", 60), (12, "B", 1), (16, "f", 0.25)]),
    (m.HISTORICAL_PRICE_DATA_REJECT, 108,
     {"RequestID": 1, "RejectText": "Server busy", "RejectReasonCode": 1,
      "RetryTimeInSeconds": 30},
     [(4, "i", 1), (8, "96s", b"Server busy"), (104, "h", 1), (106, "H", 30)]),
    (m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE, 88,
     {"RequestID": 1, "StartDateTime": 1709303400, "OpenPrice": 5120.0, "HighPrice": 5124.5,
      "LowPrice": 5119.25, "LastPrice": 5123.25, "Volume": 4321.0, "NumTrades": 812,
      "BidVolume": 2000.0, "AskVolume": 2321.0, "IsFinalRecord": 1},
     [(4, "i", 1), (8, "q", 1709303400), (16, "d", 5120.0), (24, "d", 5124.5),
      (32, "d", 5119.25), (40, "d", 5123.25), (48, "d", 4321.0), (56, "I", 812),
      (64, "d", 2000.0), (72, "d", 2321.0), (80, "B", 1)]),
    (m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE, 48,
     {"RequestID": 1, "DateTime": 1709303400.123, "AtBidOrAsk": 1, "Price": 5123.25,
      "Volume": 2.0, "IsFinalRecord": 0},
     [(4, "i", 1), (8, "d", 1709303400.123), (16, "H", 1), (24, "d", 5123.25), (32, "d", 2.0)]),
]  # fmt: skip
IDS = [m.NAMES[v[0]] for v in VECTORS]


def vector(type_: int, size: int, placed: list[tuple[int, str, Any]]) -> bytes:
    data = bytearray(size)
    struct.pack_into("<HH", data, 0, size, type_)
    for offset, code, value in placed:
        struct.pack_into("<" + code, data, offset, value)
    return bytes(data)


def test_every_message_has_a_vector() -> None:
    assert {v[0] for v in VECTORS} == set(m.SPECS)


@pytest.mark.parametrize(("type_", "size", "fields", "placed"), VECTORS, ids=IDS)
def test_binary_encoding_is_byte_exact(
    type_: int, size: int, fields: dict[str, Any], placed: list[tuple[int, str, Any]]
) -> None:
    assert encode_binary({"Type": type_, **fields}) == vector(type_, size, placed)


@pytest.mark.parametrize(("type_", "size", "fields", "placed"), VECTORS, ids=IDS)
def test_binary_decoding_reads_every_field(
    type_: int, size: int, fields: dict[str, Any], placed: list[tuple[int, str, Any]]
) -> None:
    assert decode_binary(vector(type_, size, placed)) == {"Type": type_, **fields}


@pytest.mark.parametrize(("type_", "size", "fields", "placed"), VECTORS, ids=IDS)
def test_json_is_a_nul_terminated_object_type_first(
    type_: int, size: int, fields: dict[str, Any], placed: list[tuple[int, str, Any]]
) -> None:
    encoded = encode_json({"Type": type_, **fields})
    assert encoded.endswith(b"\0")
    assert encoded.count(b"\0") == 1
    assert encoded[:-1] == json.dumps({"Type": type_, **fields}, separators=(",", ":")).encode()
    assert decode_json(encoded) == {"Type": type_, **fields}


def test_json_trade_bytes() -> None:
    trade = {"Type": 107, "SymbolID": 7, "AtBidOrAsk": 2, "Price": 5123.25, "Volume": 3.0,
             "DateTime": 1709303400.123}  # fmt: skip
    assert encode_json(trade) == (
        b'{"Type":107,"SymbolID":7,"AtBidOrAsk":2,"Price":5123.25,"Volume":3.0,'
        b'"DateTime":1709303400.123}\x00'
    )


def test_json_missing_fields_take_defaults_and_extra_keys_are_ignored() -> None:
    decoded = decode_json(b'{"Type":108,"SymbolID":3,"AskPrice":5,"AskQuantity":2,'
                          b'"DateTime":1709303400,"NewerField":"x"}\x00')  # fmt: skip
    assert decoded == {"Type": 108, "SymbolID": 3, "BidPrice": m.DBL_MAX, "BidQuantity": 0,
                       "AskPrice": 5.0, "AskQuantity": 2.0, "DateTime": 1709303400}  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b'{"Type":107,"Price":"5123.25"}', "MARKET_DATA_UPDATE_TRADE.Price: unexpected value"),
        (b'{"Type":107,"SymbolID":-1}', "SymbolID: unexpected value -1"),
        (b'{"Type":107,"AtBidOrAsk":true}', "AtBidOrAsk: unexpected value True"),
        (b'{"Type":103,"RejectText":5}', "RejectText: unexpected value 5"),
        (b'{"Type":"107"}', "needs an integer Type"),
        (b"[107]", "must be an object"),
        (b'{"Type":107', "malformed DTC JSON"),
    ],
)
def test_bad_json_is_a_decode_error(frame: bytes, error: str) -> None:
    with pytest.raises(DtcDecodeError, match=error):
        decode_json(frame)


def test_a_shorter_message_takes_the_defaults_of_the_fields_it_lacks() -> None:
    full = encode_binary({"Type": 104, "SymbolID": 7, "SessionSettlementPrice": 5110.5,
                          "SessionOpenPrice": 5115.0, "BidPrice": 5123.0})  # fmt: skip
    # An older sender: up to and including SessionOpenPrice (16..24), and half of the next.
    short = struct.pack("<H", 28) + full[2:28]
    decoded = decode_binary(short)
    assert decoded["SessionSettlementPrice"] == 5110.5
    assert decoded["SessionOpenPrice"] == 5115.0
    assert decoded["SessionHighPrice"] == m.DBL_MAX  # cut in half: not there, so unset
    assert decoded["BidPrice"] == m.DBL_MAX
    assert decoded["OpenInterest"] == m.UINT_MAX


def test_a_longer_message_is_read_and_its_extra_bytes_ignored() -> None:
    full = encode_binary({"Type": 107, "SymbolID": 7, "Price": 1.5, "Volume": 2.0,
                          "DateTime": 1709303400.5})  # fmt: skip
    longer = struct.pack("<H", 48) + full[2:] + b"\x99" * 8
    assert decode_binary(longer) == decode_binary(full)
    assert BinaryFramer().feed(longer + full) == [longer, full]


def test_strings_stop_at_the_nul_and_survive_bad_bytes() -> None:
    frame = bytearray(encode_binary({"Type": 103, "SymbolID": 1, "RejectText": "abc"}))
    frame[8:14] = b"ab\xffc\0z"
    assert decode_binary(bytes(frame))["RejectText"] == "ab\ufffdc"


def test_strings_are_cut_to_leave_room_for_the_nul() -> None:
    encoded = encode_binary({"Type": 101, "Symbol": "X" * 80})
    assert encoded[12:76] == b"X" * 63 + b"\0"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 16 * 1024 + 1, 65535])
def test_garbage_sizes_break_the_stream_without_waiting_for_them(size: int) -> None:
    framer = BinaryFramer()
    with pytest.raises(DtcFramingError, match=f"message size {size} outside"):
        framer.feed(struct.pack("<HH", size, 107) + b"\0" * 8)


def test_unknown_and_unhandled_types_are_decode_errors() -> None:
    with pytest.raises(UnknownMessageType, match="unknown DTC message type 9999"):
        decode_binary(struct.pack("<HHI", 8, 9999, 0))
    with pytest.raises(UnhandledMessageType):
        decode_binary(struct.pack("<HHI", 8, 113, 0))  # session volume: defined, not used here
    with pytest.raises(UnknownMessageType):
        decode_json(b'{"Type":9999}')


def test_a_size_beyond_the_bytes_given_is_a_decode_error() -> None:
    with pytest.raises(DtcDecodeError, match="does not fit"):
        decode_binary(struct.pack("<HH", 40, 107) + b"\0" * 10)
    with pytest.raises(DtcDecodeError, match="needs 4 header bytes"):
        decode_binary(b"\x28")


def test_the_framer_waits_for_whole_messages_and_keeps_the_rest() -> None:
    one = encode_binary({"Type": 3, "CurrentDateTime": 1})
    two = encode_binary({"Type": 100, "Status": 2})
    framer = BinaryFramer()
    stream = one + two
    assert framer.feed(stream[:5]) == []
    assert framer.pending == 5
    assert framer.feed(stream[5:], limit=1) == [one]
    assert framer.rest() == two


def test_the_json_framer_cuts_at_nuls_and_bounds_its_buffer() -> None:
    framer = JsonFramer(max_size=64)
    assert framer.feed(b'{"Type":3}\0{"Type":') == [b'{"Type":3}']
    assert framer.feed(b"100}\0\0") == [b'{"Type":100}']
    with pytest.raises(DtcFramingError, match="no NUL in 65 bytes"):
        framer.feed(b"x" * 65)


def test_the_inflater_yields_the_messages_of_a_zlib_stream() -> None:
    records = [encode_binary({"Type": 804, "RequestID": 1, "DateTime": 1709303400.0 + n,
                              "Price": 1.0 + n, "Volume": 1.0}) for n in range(3000)]  # fmt: skip
    compressed = zlib.compress(b"".join(records))
    inflater = Inflater(chunk=4096)
    frames = []
    for start in range(0, len(compressed), 1000):
        frames += inflater.feed(compressed[start : start + 1000])
    assert frames == records


def test_a_corrupt_zlib_stream_breaks_the_stream() -> None:
    with pytest.raises(DtcFramingError, match="corrupt zlib stream"):
        Inflater().feed(b"\x78\x9c" + b"\xff" * 32)


# Total decoding and framing (issue 14) ------------------------------------------------------

TRADE = {"Type": 107, "SymbolID": 1, "AtBidOrAsk": 2, "Price": 5123.25, "Volume": 3.0,
         "DateTime": 1709303400.123}  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "RecursionError"),
        (b'{"Type":107,"Price":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "RecursionError"),
        (b'{"Type":107,"Price":' + b"9" * 400 + b"}", "Price: unexpected value an integer of"),
        (b'{"Type":107,"Price":1e400}', "malformed DTC JSON: Number out of range"),
        (b'{"Type":112,"Price":1e300}', "Price: unexpected value 1e"),  # no float32 holds it
        (b'{"Type":107,"SymbolID":' + b"9" * 30 + b"}", "SymbolID: unexpected value an integer"),
        (b'{"Type":' + b"9" * 30 + b"}", "unknown DTC message type"),
        (b'{"Type":107,"Price":{"a":1}}', "Price: unexpected value {'a': 1}"),
        (b'{"Type":107,"DateTime":"1709303400"}', "DateTime: unexpected value '1709303400'"),
        (b'"107"', "must be an object, got str"),
        (b"107", "must be an object, got int"),
        (b"null", "must be an object, got NoneType"),
        (b'{"Type":103,"RejectText":"\xff\xfe"}', "malformed DTC JSON: Invalid UTF-8"),
        (b"\xc3\x28", "malformed DTC JSON"),
    ],
)
def test_any_json_input_is_a_message_or_a_decode_error(frame: bytes, error: str) -> None:
    with pytest.raises(DtcDecodeError, match=error):
        decode_json(frame)


def test_the_binary_framer_delivers_the_frames_before_garbage_and_then_breaks() -> None:
    trade = encode_binary(TRADE)
    garbage = struct.pack("<HH", 0, 107) + b"\xab" * 20
    framer = BinaryFramer()
    assert framer.feed(trade + garbage) == [trade]
    with pytest.raises(DtcFramingError, match=r"message size 0 outside \[4, 16384\]"):
        framer.feed(b"")
    assert framer.rest() == garbage  # the dead letter: the garbage only, as it came


def test_a_truncated_binary_frame_waits_and_is_what_is_left() -> None:
    trade = encode_binary(TRADE)
    framer = BinaryFramer()
    assert framer.feed(trade + trade[:17]) == [trade]
    assert (framer.pending, framer.rest()) == (17, trade[:17])


def test_the_json_framer_keeps_each_frame_apart_from_garbage_around_it() -> None:
    trade = encode_json(TRADE)
    framer = JsonFramer()
    frames = framer.feed(b"\x01garbage{\0" + trade + b"[" * 50 + b"\0" + trade)
    assert frames == [b"\x01garbage{", trade[:-1], b"[" * 50, trade[:-1]]
    assert [decode_json(f)["Price"] for f in frames[1::2]] == [5123.25, 5123.25]


def test_a_json_frame_without_its_nul_breaks_the_stream_after_the_frames_before_it() -> None:
    trade = encode_json(TRADE)
    framer = JsonFramer(max_size=1024)
    assert framer.feed(trade + b"x" * 2000) == [trade[:-1]]
    with pytest.raises(DtcFramingError, match="no NUL in 2000 bytes"):
        framer.feed(b"")
    assert framer.rest() == b"x" * 2000


def test_the_records_inflated_before_a_corruption_are_delivered() -> None:
    records = [encode_binary({"Type": 804, "RequestID": 1, "DateTime": 1709303400.0 + n,
                              "Price": 1.0 + n / 7, "Volume": 1.0})
               for n in range(2000)]  # fmt: skip
    compressed = zlib.compressobj()
    good = compressed.compress(b"".join(records)) + compressed.flush(zlib.Z_SYNC_FLUSH)
    assert len(good) > 8 * 1024
    inflater = Inflater()
    frames = inflater.feed(good + b"\xff" * 32)
    # Inflated in 1 KiB pieces: at most the records of the corrupt piece are lost.
    assert frames == records[: len(frames)]
    assert len(frames) > len(records) * (len(good) - 1024) / len(good) - 60
    with pytest.raises(DtcFramingError, match="corrupt zlib stream"):
        inflater.feed(b"")
