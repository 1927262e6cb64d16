"""The DTC messages this client speaks, written once from Sierra Chart's DTCProtocol.h (v8).

Each message is a list of ``(field, C type)`` pairs in header order; the binary layout (offsets,
padding, ``sizeof``) follows from the C rules the header is compiled with (``#pragma pack(8)``:
every member at a multiple of its own size, the struct rounded up to its largest member). The
client and the test server both encode and decode through these specs, so they cannot disagree.

Defaults are what the header's ``Clear()`` sets: zero, except the fields it sets to ``DBL_MAX``
/ ``FLT_MAX`` / ``UINT_MAX``, which DTC uses for "unset". A message shorter than its spec (an
older sender) takes these defaults for the fields it lacks.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Final

PROTOCOL_VERSION: Final = 8
DBL_MAX: Final = sys.float_info.max
FLT_MAX: Final = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
UINT_MAX: Final = 0xFFFFFFFF

# Message types (DTCProtocol.h, "Message types").
LOGON_REQUEST: Final = 1
LOGON_RESPONSE: Final = 2
HEARTBEAT: Final = 3
LOGOFF: Final = 5
ENCODING_REQUEST: Final = 6
ENCODING_RESPONSE: Final = 7
MARKET_DATA_FEED_STATUS: Final = 100
MARKET_DATA_REQUEST: Final = 101
MARKET_DATA_REJECT: Final = 103
MARKET_DATA_SNAPSHOT: Final = 104
MARKET_DATA_UPDATE_TRADE: Final = 107
MARKET_DATA_UPDATE_BID_ASK: Final = 108
MARKET_DATA_UPDATE_TRADE_COMPACT: Final = 112
MARKET_DATA_UPDATE_BID_ASK_COMPACT: Final = 117
# The current header's (navas8889/dtc-sdk DTC/DTCProtocol.h @40077a08) other market-data
# variants: 134 and 137 under pack(8), the rest under #pragma pack(push, 1).
MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT: Final = 134
MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR: Final = 137
MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP: Final = 142
MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP: Final = 143
MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS: Final = 144
MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2: Final = 146
HISTORICAL_PRICE_DATA_REQUEST: Final = 800
HISTORICAL_PRICE_DATA_RESPONSE_HEADER: Final = 801
HISTORICAL_PRICE_DATA_REJECT: Final = 802
HISTORICAL_PRICE_DATA_RECORD_RESPONSE: Final = 803
HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE: Final = 804
HISTORICAL_PRICE_DATA_RESPONSE_TRAILER: Final = 807

# Types the header defines that this client receives but has no use for (session statistics,
# depth, trading, logging...): counted and skipped, where a type outside the header is an error.
OTHER_KNOWN_TYPES: Final = frozenset(
    {4, 102, 105, 106, 110, 113, 114, 115, 116, 119, 120, 121, 122, 124, 125, 126, 127, 128,
     129, 130, 131, 132, 133, 135, 136, 138, 140, 141, 145}
    | set(range(200, 210)) | set(range(300, 309)) | {400, 401} | set(range(500, 510))
    | set(range(600, 610)) | set(range(700, 707)) | {805, 806}
)  # fmt: skip

# Enumerations used here.
BINARY_ENCODING: Final = 0
JSON_ENCODING: Final = 2
LOGON_SUCCESS: Final = 1
LOGON_ERROR: Final = 2
LOGON_ERROR_NO_RECONNECT: Final = 3
SUBSCRIBE: Final = 1
UNSUBSCRIBE: Final = 2
AT_BID: Final = 1
AT_ASK: Final = 2
FEED_UNAVAILABLE: Final = 1
FEED_AVAILABLE: Final = 2
HPDR_RETRY_IN_SECONDS: Final = 1

# C type -> (struct code, size); alignment equals size for every scalar DTC uses.
_SCALARS: Final = {
    "uint8": ("B", 1), "int8": ("b", 1), "uint16": ("H", 2), "int16": ("h", 2),
    "uint32": ("I", 4), "int32": ("i", 4), "int64": ("q", 8), "uint64": ("Q", 8),
    "float": ("f", 4), "double": ("d", 8),
}  # fmt: skip
INTEGER_RANGES: Final = {
    "B": (0, 2**8 - 1), "b": (-(2**7), 2**7 - 1), "H": (0, 2**16 - 1), "h": (-(2**15), 2**15 - 1),
    "I": (0, 2**32 - 1), "i": (-(2**31), 2**31 - 1), "q": (-(2**63), 2**63 - 1),
    "Q": (0, 2**64 - 1),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    code: str  # struct code; "s" for a fixed-length char array
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class MessageSpec:
    """One DTC message: its fields after the ``Size``/``Type`` header, layout and defaults."""

    type: int
    name: str
    fields: tuple[Field, ...]
    size: int  # sizeof() of the C struct, header included
    layout: struct.Struct  # the whole struct, header included, padding as pad bytes
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _spec(
    type_: int, name: str, members: list[tuple[str, str]], *, packing: int = 8, **defaults: Any
) -> MessageSpec:
    """Lay ``members`` out as the C compiler does under ``#pragma pack(packing)``: 8 for most
    structs, 1 for the ones the header wraps in ``#pragma pack(push, 1)``."""
    offset, widest, fmt = 4, min(2, packing), ["<HH"]  # the uint16 Size and Type of every message
    fields: list[Field] = []
    for name_, ctype in members:
        if ctype.startswith("char["):
            code, size, align = "s", int(ctype[5:-1]), 1
            fmt_code = f"{size}s"
        else:
            code, size = _SCALARS[ctype]
            align, fmt_code = min(size, packing), code
        padding = -offset % align
        if padding:
            fmt.append(f"{padding}x")
        offset += padding
        fields.append(Field(name_, code, offset, size))
        fmt.append(fmt_code)
        offset += size
        widest = max(widest, align)
    tail = -offset % widest
    if tail:
        fmt.append(f"{tail}x")
    layout = struct.Struct("".join(fmt))
    assert layout.size == offset + tail
    values = {f.name: ("" if f.code == "s" else 0) for f in fields}
    unknown = set(defaults) - set(values)
    assert not unknown, f"{name}: defaults for unknown fields {unknown}"
    return MessageSpec(type_, name, tuple(fields), layout.size, layout, {**values, **defaults})


_TEXT = "char[96]"  # TEXT_DESCRIPTION_LENGTH
_SYMBOL = "char[64]"  # SYMBOL_LENGTH
_EXCHANGE = "char[16]"  # EXCHANGE_LENGTH

SPECS: Final[dict[int, MessageSpec]] = {
    spec.type: spec
    for spec in (
        _spec(ENCODING_REQUEST, "ENCODING_REQUEST", [
            ("ProtocolVersion", "int32"), ("Encoding", "int32"), ("ProtocolType", "char[4]"),
        ], ProtocolVersion=PROTOCOL_VERSION, ProtocolType="DTC"),
        _spec(ENCODING_RESPONSE, "ENCODING_RESPONSE", [
            ("ProtocolVersion", "int32"), ("Encoding", "int32"), ("ProtocolType", "char[4]"),
        ], ProtocolVersion=PROTOCOL_VERSION, ProtocolType="DTC"),
        _spec(LOGON_REQUEST, "LOGON_REQUEST", [
            ("ProtocolVersion", "int32"), ("Username", "char[32]"), ("Password", "char[32]"),
            ("GeneralTextData", "char[64]"), ("Integer_1", "int32"), ("Integer_2", "int32"),
            ("HeartbeatIntervalInSeconds", "int32"), ("TradeMode", "int32"),
            ("TradeAccount", "char[32]"), ("HardwareIdentifier", "char[64]"),
            ("ClientName", "char[32]"),
        ], ProtocolVersion=PROTOCOL_VERSION),
        _spec(LOGON_RESPONSE, "LOGON_RESPONSE", [
            ("ProtocolVersion", "int32"), ("Result", "int32"), ("ResultText", _TEXT),
            ("ReconnectAddress", "char[64]"), ("Integer_1", "int32"), ("ServerName", "char[60]"),
            ("MarketDepthUpdatesBestBidAndAsk", "uint8"), ("TradingIsSupported", "uint8"),
            ("OCOOrdersSupported", "uint8"), ("OrderCancelReplaceSupported", "uint8"),
            ("SymbolExchangeDelimiter", "char[4]"), ("SecurityDefinitionsSupported", "uint8"),
            ("HistoricalPriceDataSupported", "uint8"),
            ("ResubscribeWhenMarketDataFeedAvailable", "uint8"),
            ("MarketDepthIsSupported", "uint8"),
            ("OneHistoricalPriceDataRequestPerConnection", "uint8"),
            ("BracketOrdersSupported", "uint8"), ("UseIntegerPriceOrderMessages", "uint8"),
            ("UsesMultiplePositionsPerSymbolAndTradeAccount", "uint8"),
            ("MarketDataSupported", "uint8"),
        ], ProtocolVersion=PROTOCOL_VERSION, OrderCancelReplaceSupported=1,
           MarketDepthIsSupported=1, MarketDataSupported=1),
        _spec(HEARTBEAT, "HEARTBEAT", [
            ("NumDroppedMessages", "uint32"), ("CurrentDateTime", "int64"),  # t_DateTime
        ]),
        _spec(LOGOFF, "LOGOFF", [("Reason", _TEXT), ("DoNotReconnect", "uint8")]),
        _spec(MARKET_DATA_FEED_STATUS, "MARKET_DATA_FEED_STATUS", [("Status", "int32")]),
        _spec(MARKET_DATA_REQUEST, "MARKET_DATA_REQUEST", [
            ("RequestAction", "int32"), ("SymbolID", "uint32"), ("Symbol", _SYMBOL),
            ("Exchange", _EXCHANGE), ("IntervalForSnapshotUpdatesInMilliseconds", "uint32"),
        ], RequestAction=SUBSCRIBE),
        _spec(MARKET_DATA_REJECT, "MARKET_DATA_REJECT", [
            ("SymbolID", "uint32"), ("RejectText", _TEXT),
        ]),
        _spec(MARKET_DATA_SNAPSHOT, "MARKET_DATA_SNAPSHOT", [
            ("SymbolID", "uint32"), ("SessionSettlementPrice", "double"),
            ("SessionOpenPrice", "double"), ("SessionHighPrice", "double"),
            ("SessionLowPrice", "double"), ("SessionVolume", "double"),
            ("SessionNumTrades", "uint32"), ("OpenInterest", "uint32"), ("BidPrice", "double"),
            ("AskPrice", "double"), ("AskQuantity", "double"), ("BidQuantity", "double"),
            ("LastTradePrice", "double"), ("LastTradeVolume", "double"),
            ("LastTradeDateTime", "double"), ("BidAskDateTime", "double"),  # with milliseconds
            ("SessionSettlementDateTime", "uint32"), ("TradingSessionDate", "uint32"),
            ("TradingStatus", "int8"), ("MarketDepthUpdateDateTime", "double"),
        ], SessionSettlementPrice=DBL_MAX, SessionOpenPrice=DBL_MAX, SessionHighPrice=DBL_MAX,
           SessionLowPrice=DBL_MAX, SessionVolume=DBL_MAX, SessionNumTrades=UINT_MAX,
           OpenInterest=UINT_MAX, BidPrice=DBL_MAX, AskPrice=DBL_MAX, AskQuantity=DBL_MAX,
           BidQuantity=DBL_MAX, LastTradePrice=DBL_MAX, LastTradeVolume=DBL_MAX),
        _spec(MARKET_DATA_UPDATE_TRADE, "MARKET_DATA_UPDATE_TRADE", [
            ("SymbolID", "uint32"), ("AtBidOrAsk", "uint16"), ("Price", "double"),
            ("Volume", "double"), ("DateTime", "double"),  # t_DateTimeWithMilliseconds
        ]),
        _spec(MARKET_DATA_UPDATE_TRADE_COMPACT, "MARKET_DATA_UPDATE_TRADE_COMPACT", [
            ("Price", "float"), ("Volume", "float"), ("DateTime", "uint32"),  # t_DateTime4Byte
            ("SymbolID", "uint32"), ("AtBidOrAsk", "uint16"),
        ]),
        _spec(MARKET_DATA_UPDATE_BID_ASK, "MARKET_DATA_UPDATE_BID_ASK", [
            ("SymbolID", "uint32"), ("BidPrice", "double"), ("BidQuantity", "float"),
            ("AskPrice", "double"), ("AskQuantity", "float"), ("DateTime", "uint32"),
        ], BidPrice=DBL_MAX, AskPrice=DBL_MAX),
        _spec(MARKET_DATA_UPDATE_BID_ASK_COMPACT, "MARKET_DATA_UPDATE_BID_ASK_COMPACT", [
            ("BidPrice", "float"), ("BidQuantity", "float"), ("AskPrice", "float"),
            ("AskQuantity", "float"), ("DateTime", "uint32"), ("SymbolID", "uint32"),
        ], BidPrice=FLT_MAX, AskPrice=FLT_MAX),
        _spec(MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT, "MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT", [
            ("SymbolID", "uint32"), ("LastTradePrice", "double"), ("LastTradeVolume", "double"),
            ("LastTradeDateTime", "double"),  # t_DateTimeWithMilliseconds
        ]),
        _spec(MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR,
              "MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR", [
            ("SymbolID", "uint32"), ("AtBidOrAsk", "uint8"), ("UnbundledTradeIndicator", "int8"),
            ("TradeCondition", "uint8"), ("Reserve_1", "uint8"), ("Reserve_2", "uint32"),
            ("Price", "double"), ("Volume", "uint32"), ("Reserve_3", "uint32"),
            ("DateTime", "double"),  # t_DateTimeWithMilliseconds
        ]),
        # No time: "the prior received trade timestamp" (Sierra Chart's DTC message docs).
        _spec(MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP, "MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP", [
            ("SymbolID", "uint32"), ("Price", "float"), ("Volume", "uint32"),
            ("AtBidOrAsk", "uint8"), ("UnbundledTradeIndicator", "int8"),
            ("TradeCondition", "int8"),
        ], packing=1),
        _spec(MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP, "MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP", [
            ("SymbolID", "uint32"), ("BidPrice", "float"), ("BidQuantity", "uint32"),
            ("AskPrice", "float"), ("AskQuantity", "uint32"),
        ], packing=1, BidPrice=FLT_MAX, AskPrice=FLT_MAX),
        _spec(MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS,
              "MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS", [
            ("SymbolID", "uint32"), ("BidPrice", "float"), ("BidQuantity", "float"),
            ("AskPrice", "float"), ("AskQuantity", "float"),
            ("DateTime", "int64"),  # t_DateTimeWithMicrosecondsInt
        ], packing=1, BidPrice=FLT_MAX, AskPrice=FLT_MAX),
        _spec(MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2,
              "MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2", [
            ("SymbolID", "uint32"), ("Price", "float"), ("Volume", "uint32"),
            ("DateTime", "int64"),  # t_DateTimeWithMicrosecondsInt
            ("AtBidOrAsk", "uint8"), ("UnbundledTradeIndicator", "int8"),
            ("TradeCondition", "int8"),
        ], packing=1),
        _spec(HISTORICAL_PRICE_DATA_REQUEST, "HISTORICAL_PRICE_DATA_REQUEST", [
            ("RequestID", "int32"), ("Symbol", _SYMBOL), ("Exchange", _EXCHANGE),
            ("RecordInterval", "int32"), ("StartDateTime", "int64"), ("EndDateTime", "int64"),
            ("MaxDaysToReturn", "uint32"), ("UseZLibCompression", "uint8"),
            ("RequestDividendAdjustedStockData", "uint8"), ("Flag_1", "uint8"),
        ]),
        _spec(HISTORICAL_PRICE_DATA_RESPONSE_HEADER, "HISTORICAL_PRICE_DATA_RESPONSE_HEADER", [
            ("RequestID", "int32"), ("RecordInterval", "int32"), ("UseZLibCompression", "uint8"),
            ("NoRecordsToReturn", "uint8"), ("IntToFloatPriceDivisor", "float"),
        ]),
        _spec(HISTORICAL_PRICE_DATA_REJECT, "HISTORICAL_PRICE_DATA_REJECT", [
            ("RequestID", "int32"), ("RejectText", _TEXT), ("RejectReasonCode", "int16"),
            ("RetryTimeInSeconds", "uint16"),
        ]),
        _spec(HISTORICAL_PRICE_DATA_RECORD_RESPONSE, "HISTORICAL_PRICE_DATA_RECORD_RESPONSE", [
            ("RequestID", "int32"), ("StartDateTime", "int64"), ("OpenPrice", "double"),
            ("HighPrice", "double"), ("LowPrice", "double"), ("LastPrice", "double"),
            ("Volume", "double"), ("NumTrades", "uint32"),  # a union with OpenInterest
            ("BidVolume", "double"), ("AskVolume", "double"), ("IsFinalRecord", "uint8"),
        ]),
        _spec(HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE,
              "HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE", [
            ("RequestID", "int32"), ("DateTime", "double"), ("AtBidOrAsk", "uint16"),
            ("Price", "double"), ("Volume", "double"), ("IsFinalRecord", "uint8"),
        ]),
        _spec(HISTORICAL_PRICE_DATA_RESPONSE_TRAILER, "HISTORICAL_PRICE_DATA_RESPONSE_TRAILER", [
            ("RequestID", "int32"),
            ("FinalRecordLastDateTime", "int64"),  # t_DateTimeWithMicrosecondsInt
        ]),
    )
}  # fmt: skip

# Names of header types this client skips, for the log line that says so (current header).
_SKIPPED_NAMES: Final = {
    102: "MARKET_DEPTH_REQUEST",
    106: "MARKET_DEPTH_UPDATE_LEVEL", 113: "MARKET_DATA_UPDATE_SESSION_VOLUME",
    114: "MARKET_DATA_UPDATE_SESSION_HIGH", 115: "MARKET_DATA_UPDATE_SESSION_LOW",
    116: "MARKET_DATA_FEED_SYMBOL_STATUS", 119: "MARKET_DATA_UPDATE_SESSION_SETTLEMENT",
    120: "MARKET_DATA_UPDATE_SESSION_OPEN", 121: "MARKET_DEPTH_REJECT",
    122: "MARKET_DEPTH_SNAPSHOT_LEVEL", 124: "MARKET_DATA_UPDATE_OPEN_INTEREST",
    135: "MARKET_DATA_UPDATE_SESSION_NUM_TRADES", 136: "MARKET_DATA_UPDATE_TRADING_SESSION_DATE",
    138: "TRADING_SYMBOL_STATUS",
    140: "MARKET_DEPTH_UPDATE_LEVEL_FLOAT_WITH_MILLISECONDS",
    141: "MARKET_DEPTH_UPDATE_LEVEL_NO_TIMESTAMP", 145: "MARKET_DEPTH_SNAPSHOT_LEVEL_FLOAT",
    700: "USER_MESSAGE", 701: "GENERAL_LOG_MESSAGE", 702: "ALERT_MESSAGE",
}  # fmt: skip
NAMES: Final = {spec.type: spec.name for spec in SPECS.values()}


def name_of(type_: int) -> str:
    """The header's name of a message type, or ``unnamed`` for one this table does not name."""
    return NAMES.get(type_) or _SKIPPED_NAMES.get(type_, "unnamed")
