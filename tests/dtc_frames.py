"""DTC binary frames packed by hand from the current header, not through the project's own
struct table (``producers.dtc.messages``), so that a wrong entry there cannot agree with itself.

Source: navas8889/dtc-sdk ``DTC/DTCProtocol.h`` at commit
40077a084e39a0e1b235c29907fe881586ad66a5. Every frame starts with ``uint16 Size, uint16 Type``;
``Size`` is the header's ``sizeof`` of the struct, checked against the format's size below.
Offsets in the comments are the C compiler's under the struct's ``#pragma pack``.
"""

from __future__ import annotations

import struct
from typing import Final

# (type, sizeof, little-endian layout after Size and Type)
_LAYOUTS: Final = {
    # s_MarketDataUpdateLastTradeSnapshot, pack(8): uint32 SymbolID 4, double LastTradePrice 8,
    # double LastTradeVolume 16, t_DateTimeWithMilliseconds LastTradeDateTime 24.
    134: (32, "Iddd"),
    # s_MarketDataUpdateTradeWithUnbundledIndicator, pack(8): uint32 SymbolID 4, uint8
    # AtBidOrAsk 8, int8 UnbundledTradeIndicator 9, uint8 TradeCondition 10, uint8 Reserve_1 11,
    # uint32 Reserve_2 12, double Price 16, uint32 Volume 24, uint32 Reserve_3 28,
    # t_DateTimeWithMilliseconds DateTime 32.
    137: (40, "IBbBBIdIId"),
    # s_MarketDataUpdateTradeNoTimestamp, pack(1): uint32 SymbolID, float Price, uint32 Volume,
    # uint8 AtBidOrAsk, int8 UnbundledTradeIndicator, int8 TradeCondition.
    142: (19, "IfIBbb"),
    # s_MarketDataUpdateBidAskNoTimeStamp, pack(1): uint32 SymbolID, float BidPrice, uint32
    # BidQuantity, float AskPrice, uint32 AskQuantity.
    143: (24, "IfIfI"),
    # s_MarketDataUpdateBidAskFloatWithMicroseconds, pack(1): uint32 SymbolID, float BidPrice,
    # float BidQuantity, float AskPrice, float AskQuantity, t_DateTimeWithMicrosecondsInt
    # DateTime (int64).
    144: (32, "Iffffq"),
    # s_MarketDataUpdateTradeWithUnbundledIndicator2, pack(1): uint32 SymbolID, float Price,
    # uint32 Volume, t_DateTimeWithMicrosecondsInt DateTime (int64), AtBidOrAskEnum8 (uint8),
    # UnbundledTradeIndicatorEnum (int8), TradeConditionEnum (int8).
    146: (27, "IfIqBbb"),
    # s_HistoricalPriceDataRecordResponse, pack(8): int32 RequestID 4,
    # t_DateTimeWithMicrosecondsInt StartDateTime 8 ("format can also be t_DateTime. Check
    # value to determine."), double OpenPrice 16, HighPrice 24, LowPrice 32, LastPrice 40,
    # Volume 48, union {uint32 OpenInterest; uint32 NumTrades} 56, double BidVolume 64,
    # AskVolume 72, uint8 IsFinalRecord 80; padded to 88.
    803: (88, "iqdddddI4xddB7x"),
    # s_HistoricalPriceDataTickRecordResponse, pack(8): int32 RequestID 4,
    # t_DateTimeWithMilliseconds DateTime 8, uint16 AtBidOrAsk 16, double Price 24, double
    # Volume 32, uint8 IsFinalRecord 40; padded to 48.
    804: (48, "idH6xddB7x"),
    # s_HistoricalPriceDataResponseTrailer, pack(8): int32 RequestID 4,
    # t_DateTimeWithMicrosecondsInt FinalRecordLastDateTime 8; sizeof 16.
    807: (16, "iq"),
}  # fmt: skip
for _type, (_size, _layout) in _LAYOUTS.items():
    assert struct.calcsize("<HH" + _layout) == _size, (_type, _size)


def frame(type_: int, *fields: object) -> bytes:
    """The message ``type_`` with ``fields`` in the header's order (padding left out)."""
    size, layout = _LAYOUTS[type_]
    return struct.pack("<HH" + layout, size, type_, *fields)


def last_trade_134(symbol_id: int, *, price: float, volume: float, time_s: float) -> bytes:
    return frame(134, symbol_id, price, volume, time_s)


def trade_137(
    symbol_id: int, *, price: float, volume: int, time_s: float, at: int, unbundled: int = 0
) -> bytes:
    """``at``: AtBidOrAsk (1 at the bid, 2 at the ask)."""
    return frame(137, symbol_id, at, unbundled, 0, 0, 0, price, volume, 0, time_s)


def trade_142(symbol_id: int, *, price: float, volume: int, at: int) -> bytes:
    return frame(142, symbol_id, price, volume, at, 0, 0)


def bid_ask_143(symbol_id: int, *, bid: float, bid_size: int, ask: float, ask_size: int) -> bytes:
    return frame(143, symbol_id, bid, bid_size, ask, ask_size)


def bid_ask_144(
    symbol_id: int, *, bid: float, bid_size: float, ask: float, ask_size: float, time_us: int
) -> bytes:
    return frame(144, symbol_id, bid, bid_size, ask, ask_size, time_us)


def trade_146(symbol_id: int, *, price: float, volume: int, time_us: int, at: int) -> bytes:
    return frame(146, symbol_id, price, volume, time_us, at, 0, 0)


def bar_803(
    start: int, *, open_: float, high: float, low: float, last: float, volume: float,
    num_trades: int, request_id: int = 1, final: bool = False,
) -> bytes:  # fmt: skip
    """A bar; ``start`` in seconds or microseconds, as a server may send either."""
    return frame(803, request_id, start, open_, high, low, last, volume, num_trades, 0.0, 0.0,
                 int(final))  # fmt: skip


def tick_804(time_s: float, *, at: int, price: float, volume: float, request_id: int = 1) -> bytes:
    return frame(804, request_id, time_s, at, price, volume, 0)


def trailer_807(final_record_time: int, *, request_id: int = 1) -> bytes:
    """The end of a history response; the time in seconds or microseconds."""
    return frame(807, request_id, final_record_time)
