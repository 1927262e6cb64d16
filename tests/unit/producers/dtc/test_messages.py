"""The message table against DTCProtocol.h (v8): sizeof and offsets, worked out by hand.

Every struct is compiled under ``#pragma pack(8)``: a member sits at a multiple of its own size,
and the struct is padded to a multiple of its largest member. The header is ``uint16 Size`` at 0
and ``uint16 Type`` at 2, so the first member starts at 4.
"""

from __future__ import annotations

import pytest

from producers.dtc import messages as m

SIZEOF = {
    # int32 ProtocolVersion 4..8, int32 Encoding 8..12, char[4] ProtocolType 12..16
    m.ENCODING_REQUEST: 16,
    m.ENCODING_RESPONSE: 16,
    # 4 + int32 (4) + Username 32 + Password 32 + GeneralTextData 64 = 136; + 4 int32 = 152;
    # + TradeAccount 32 = 184; + HardwareIdentifier 64 = 248; + ClientName 32 = 280 (÷4)
    m.LOGON_REQUEST: 280,
    # 4 + ProtocolVersion 4 + Result 4 = 12; + ResultText 96 = 108; + ReconnectAddress 64 = 172;
    # + Integer_1 4 = 176; + ServerName 60 = 236; + 4 uint8 = 240; + delimiter char[4] = 244;
    # + 9 uint8 = 253; padded to a multiple of 4 (widest: int32) = 256
    m.LOGON_RESPONSE: 256,
    # 4 + uint32 NumDroppedMessages = 8; int64 CurrentDateTime at 8 = 16
    m.HEARTBEAT: 16,
    # 4 + Reason 96 = 100; + uint8 DoNotReconnect = 101; padded to uint16 = 102
    m.LOGOFF: 102,
    # 4 + int32 Status = 8
    m.MARKET_DATA_FEED_STATUS: 8,
    # 4 + RequestAction 4 + SymbolID 4 = 12; + Symbol 64 = 76; + Exchange 16 = 92; + uint32 = 96
    m.MARKET_DATA_REQUEST: 96,
    # 4 + SymbolID 4 = 8; + RejectText 96 = 104
    m.MARKET_DATA_REJECT: 104,
    # SymbolID 4..8; 5 doubles 8..48; 2 uint32 48..56; 6 doubles 56..104; 2 doubles 104..120;
    # 2 uint32 120..128; int8 TradingStatus 128; pad to 136; double 136..144
    m.MARKET_DATA_SNAPSHOT: 144,
    # SymbolID 4..8; uint16 AtBidOrAsk 8..10; pad to 16; Price 16, Volume 24, DateTime 32..40
    m.MARKET_DATA_UPDATE_TRADE: 40,
    # float Price 4, float Volume 8, uint32 DateTime 12, uint32 SymbolID 16, uint16 20..22;
    # padded to a multiple of 4 = 24
    m.MARKET_DATA_UPDATE_TRADE_COMPACT: 24,
    # SymbolID 4..8; double BidPrice 8..16; float BidQuantity 16..20; pad to 24; double AskPrice
    # 24..32; float AskQuantity 32..36; uint32 DateTime 36..40
    m.MARKET_DATA_UPDATE_BID_ASK: 40,
    # 4 floats 4..20; uint32 DateTime 20..24; uint32 SymbolID 24..28
    m.MARKET_DATA_UPDATE_BID_ASK_COMPACT: 28,
    # RequestID 4..8; Symbol 8..72; Exchange 72..88; RecordInterval 88..92; pad to 96;
    # int64 Start 96..104, End 104..112; uint32 MaxDays 112..116; 3 uint8 116..119; pad to 120
    m.HISTORICAL_PRICE_DATA_REQUEST: 120,
    # RequestID 4..8; RecordInterval 8..12; 2 uint8 12..14; pad to 16; float divisor 16..20
    m.HISTORICAL_PRICE_DATA_RESPONSE_HEADER: 20,
    # RequestID 4..8; RejectText 8..104; int16 104..106; uint16 106..108
    m.HISTORICAL_PRICE_DATA_REJECT: 108,
    # RequestID 4..8; int64 StartDateTime 8..16; 5 doubles 16..56; uint32 union 56..60; pad to
    # 64; 2 doubles 64..80; uint8 IsFinalRecord 80; padded to a multiple of 8 = 88
    m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE: 88,
    # RequestID 4..8; double DateTime 8..16; uint16 AtBidOrAsk 16..18; pad to 24; 2 doubles
    # 24..40; uint8 IsFinalRecord 40; padded to 48
    m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE: 48,
    # The current header (navas8889/dtc-sdk @40077a08, DTC/DTCProtocol.h) wraps these in
    # #pragma pack(push, 1): no padding at all.
    # s_MarketDataUpdateBidAskFloatWithMicroseconds: SymbolID 4..8; 4 floats 8..24; int64 24..32
    m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS: 32,
    # s_MarketDataUpdateTradeWithUnbundledIndicator2: SymbolID 4..8; float Price 8..12; uint32
    # Volume 12..16; int64 DateTime 16..24 (unaligned); 3 one-byte enums 24..27
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2: 27,
    # s_MarketDataUpdateTradeNoTimestamp (pack(1)): SymbolID 4..8; float Price 8..12; uint32
    # Volume 12..16; 3 one-byte enums 16..19
    m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP: 19,
    # s_MarketDataUpdateBidAskNoTimeStamp (pack(1)): SymbolID 4..8; float 8, uint32 12, float
    # 16, uint32 20..24
    m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP: 24,
    # Same header, under pack(8):
    # s_MarketDataUpdateLastTradeSnapshot: SymbolID 4..8; 3 doubles 8..32
    m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT: 32,
    # s_MarketDataUpdateTradeWithUnbundledIndicator: SymbolID 4..8; uint8 AtBidOrAsk 8, int8
    # Unbundled 9, uint8 TradeCondition 10, uint8 Reserve_1 11; uint32 Reserve_2 12..16; double
    # Price 16..24; uint32 Volume 24..28; uint32 Reserve_3 28..32; double DateTime 32..40
    m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR: 40,
    # s_HistoricalPriceDataResponseTrailer: RequestID 4..8; int64 FinalRecordLastDateTime 8..16
    m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER: 16,
}


def test_every_message_is_pinned() -> None:
    assert set(SIZEOF) == set(m.SPECS)


@pytest.mark.parametrize("type_", sorted(SIZEOF))
def test_sizes_match_the_c_header(type_: int) -> None:
    assert m.SPECS[type_].size == SIZEOF[type_]
    assert m.SPECS[type_].layout.size == SIZEOF[type_]


@pytest.mark.parametrize(
    ("type_", "field", "offset"),
    [
        (m.MARKET_DATA_UPDATE_TRADE, "Price", 16),  # a double after uint32 + uint16 sits at 16
        (m.MARKET_DATA_UPDATE_BID_ASK, "AskPrice", 24),
        (m.MARKET_DATA_SNAPSHOT, "MarketDepthUpdateDateTime", 136),
        (m.HISTORICAL_PRICE_DATA_REQUEST, "StartDateTime", 96),
        (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2, "DateTime", 16),  # pack(1)
        (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2, "AtBidOrAsk", 24),
        (m.MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS, "DateTime", 24),
        (m.MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP, "AtBidOrAsk", 16),
        (m.MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP, "AskQuantity", 20),
        (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR, "Price", 16),
        (m.MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR, "DateTime", 32),
        (m.MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT, "LastTradeDateTime", 24),
        (m.HISTORICAL_PRICE_DATA_RESPONSE_TRAILER, "FinalRecordLastDateTime", 8),
        (m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE, "BidVolume", 64),
        (m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE, "Price", 24),
        (m.LOGON_RESPONSE, "MarketDataSupported", 252),
    ],
)
def test_members_are_naturally_aligned(type_: int, field: str, offset: int) -> None:
    assert {f.name: f.offset for f in m.SPECS[type_].fields}[field] == offset


def test_unset_values_are_the_c_limits() -> None:
    assert m.DBL_MAX == 1.7976931348623157e308
    assert m.FLT_MAX == 3.4028234663852886e38
    assert m.SPECS[m.MARKET_DATA_SNAPSHOT].defaults["OpenInterest"] == 0xFFFFFFFF
    assert m.SPECS[m.MARKET_DATA_UPDATE_BID_ASK_COMPACT].defaults["AskPrice"] == m.FLT_MAX
