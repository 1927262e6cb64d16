"""DTC messages to records, field by field, from the recorded fixtures (sandbox/fixtures/dtc)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick, derived_trade_id
from producers.dtc import messages as m
from producers.dtc import normalise
from producers.dtc.codec import decode_binary, decode_json, encode_binary, encode_json
from producers.dtc.normalise import Instrument, Occurrences
from sandbox.dtc import fixture, fixture_trades
from tests import dtc_frames as f

ES = Instrument("ESZ4", "CME")
RECEIVED = datetime(2024, 3, 1, 14, 30, 5, 500000, tzinfo=UTC)


def trade_message(**fields: object) -> dict[str, object]:
    base = {"Type": m.MARKET_DATA_UPDATE_TRADE, "SymbolID": 1, "AtBidOrAsk": m.AT_ASK,
            "Price": 5123.25, "Volume": 3.0, "DateTime": 1709303400.123}  # fmt: skip
    return decode_binary(encode_binary({**base, **fields}))


def test_a_trade_keeps_the_servers_millisecond_time_and_the_aggressor() -> None:
    tick = normalise.trade(trade_message(), ES, RECEIVED, Occurrences())
    assert tick == Tick(
        exchange="CME", symbol="ESZ4",
        timestamp=datetime(2024, 3, 1, 14, 30, 0, 123000, tzinfo=UTC), source="dtc.trade",
        trade_id=derived_trade_id("ESZ4", "2024-03-01T14:30:00.123000+00:00", 5123.25, 3.0,
                                  m.AT_ASK, 0),
        price=Decimal("5123.25"), size=Decimal("3.0"), side="buy", received_at=RECEIVED,
    )  # fmt: skip
    at_bid = normalise.trade(trade_message(AtBidOrAsk=m.AT_BID), ES, RECEIVED, Occurrences())
    assert at_bid.side == "sell"
    unset = normalise.trade(trade_message(AtBidOrAsk=0), ES, RECEIVED, Occurrences())
    assert unset.side is None


def test_identical_trades_in_one_millisecond_are_two_trades_and_a_replay_the_same_two() -> None:
    trades = fixture_trades()
    assert trades[9] == trades[10]  # recorded: two identical 10-lots at one millisecond
    first = [normalise.trade(t, ES, RECEIVED, Occurrences()) for t in trades[9:11]]
    assert first[0].trade_id == first[1].trade_id  # without the shared counter: collide
    occurrences = Occurrences()
    ids = [normalise.trade(t, ES, RECEIVED, occurrences).trade_id for t in trades]
    assert len(set(ids)) == len(trades)
    occurrences.reset()  # what a reconnect does
    assert [normalise.trade(t, ES, RECEIVED, occurrences).trade_id for t in trades] == ids


def test_json_and_binary_give_the_same_record() -> None:
    message = trade_message()
    via_json = decode_json(encode_json(message))
    assert normalise.trade(via_json, ES, RECEIVED, Occurrences()) == normalise.trade(
        message, ES, RECEIVED, Occurrences()
    )


def test_a_compact_trade_has_whole_seconds_and_float32_values_as_meant() -> None:
    message = decode_binary(encode_binary({
        "Type": m.MARKET_DATA_UPDATE_TRADE_COMPACT, "Price": 71.37, "Volume": 0.1,
        "DateTime": 1709303400, "SymbolID": 1, "AtBidOrAsk": m.AT_BID,
    }))  # fmt: skip
    assert message["Price"] != 71.37  # float32 rounding
    tick = normalise.trade_compact(message, Instrument("CLZ4"), RECEIVED, Occurrences())
    assert (tick.exchange, tick.symbol, tick.price, tick.size, tick.side) == (
        "SIERRA", "CLZ4", Decimal("71.37"), Decimal("0.1"), "sell",
    )  # fmt: skip
    assert tick.timestamp == datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def test_bid_ask_gives_a_quote_per_side_that_is_set() -> None:
    message = decode_binary(encode_binary({
        "Type": m.MARKET_DATA_UPDATE_BID_ASK, "SymbolID": 1, "BidPrice": 5123.0,
        "BidQuantity": 24.0, "AskQuantity": 31.0, "DateTime": 1709303401,
    }))  # fmt: skip
    assert message["AskPrice"] == m.DBL_MAX
    [bid] = normalise.bid_ask(message, ES, RECEIVED, Occurrences())
    assert bid == Tick(
        exchange="CME", symbol="ESZ4", timestamp=datetime(2024, 3, 1, 14, 30, 1, tzinfo=UTC),
        source="dtc.quote",
        trade_id=derived_trade_id("ESZ4", "2024-03-01T14:30:01+00:00", "bid", "5123.0", "24", 0),
        price=Decimal("5123.0"), size=Decimal("24"), side="bid", received_at=RECEIVED,
    )  # fmt: skip


def test_compact_bid_ask_uses_flt_max_for_unset() -> None:
    message = decode_binary(encode_binary({
        "Type": m.MARKET_DATA_UPDATE_BID_ASK_COMPACT, "SymbolID": 1, "AskPrice": 5123.25,
        "AskQuantity": 7.0, "DateTime": 1709303401,
    }))  # fmt: skip
    [ask] = normalise.bid_ask(message, ES, RECEIVED, Occurrences(), single=True)
    assert (ask.side, ask.price, ask.size) == ("ask", Decimal("5123.25"), Decimal("7"))


def test_a_snapshot_gives_the_quotes_and_the_last_trade_with_the_session() -> None:
    message = {**fixture("ESZ4_snapshot.json")["snapshot"], "SymbolID": 1}
    bid, ask, last = normalise.snapshot(decode_binary(encode_binary(message)), ES, RECEIVED,
                                        Occurrences())  # fmt: skip
    quoted = datetime(2024, 3, 1, 14, 29, 59, 900000, tzinfo=UTC)
    assert (bid.side, bid.price, bid.size, bid.timestamp, bid.source) == (
        "bid", Decimal("5123.0"), Decimal("24.0"), quoted, "dtc.snapshot",
    )  # fmt: skip
    assert (ask.side, ask.price, ask.size) == ("ask", Decimal("5123.25"), Decimal("31.0"))
    assert last.timestamp == datetime(2024, 3, 1, 14, 29, 59, 875000, tzinfo=UTC)
    assert (last.price, last.size, last.side, last.source) == (
        Decimal("5123.25"), Decimal("2.0"), None, "dtc.snapshot",
    )  # fmt: skip
    assert last.extras == {
        "session_settlement": "5110.5", "session_open": "5115.0", "session_high": "5130.75",
        "session_low": "5101.25", "session_volume": "1234567.0", "session_trades": 98765,
        "open_interest": 2200345, "session_date": "2024-03-01",
    }  # fmt: skip


def test_an_empty_snapshot_gives_nothing() -> None:
    empty = decode_binary(encode_binary({"Type": m.MARKET_DATA_SNAPSHOT, "SymbolID": 1}))
    assert normalise.snapshot(empty, ES, RECEIVED, Occurrences()) == []


def test_a_historical_bar() -> None:
    message = decode_binary(encode_binary({
        "Type": m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE, "RequestID": 1,
        "StartDateTime": 1709303400, "OpenPrice": 5120.0, "HighPrice": 5124.5,
        "LowPrice": 5119.25, "LastPrice": 5123.25, "Volume": 4321.0, "NumTrades": 812,
    }))  # fmt: skip
    opened = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert normalise.history_bar(message, ES, "1m", opened.replace(minute=31)) == Bar(
        exchange="CME", symbol="ESZ4", interval="1m", timestamp=opened,
        open=Decimal("5120.0"), high=Decimal("5124.5"), low=Decimal("5119.25"),
        close=Decimal("5123.25"), volume=Decimal("4321.0"), trade_count=812, closed=True,
        source="dtc.history",
    )  # fmt: skip
    assert not normalise.history_bar(message, ES, "1m", opened.replace(second=59)).closed
    assert normalise.history_bar(message, ES, "1d", opened).trade_count is None  # OpenInterest


@pytest.mark.parametrize(("start", "micros"), [
    (1709303400, 0), (1709303400_000_000, 0), (1709303400_250_000, 250_000),
])  # fmt: skip
def test_a_historical_bar_time_in_seconds_or_microseconds_by_value(start: int, micros: int) -> None:
    # The current header: t_DateTimeWithMicrosecondsInt, "format can also be t_DateTime".
    message = decode_binary(encode_binary({
        "Type": m.HISTORICAL_PRICE_DATA_RECORD_RESPONSE, "RequestID": 1, "StartDateTime": start,
        "OpenPrice": 1.0, "HighPrice": 1.0, "LowPrice": 1.0, "LastPrice": 1.0,
    }))  # fmt: skip
    bar = normalise.history_bar(message, ES, "1m", RECEIVED)
    expected = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert bar.timestamp == expected.replace(microsecond=micros)


# Frames built by hand from the current header (tests/dtc_frames.py), not through the
# project's table.
TRADE_146 = f.trade_146(1, price=5123.25, volume=3, time_us=1709303400_123456, at=m.AT_ASK)
QUOTE_144 = f.bid_ask_144(1, bid=5123.0, bid_size=7.0, ask=3.4028234663852886e38, ask_size=0.0,
                          time_us=1709303400_654321)  # fmt: skip


def test_a_trade_with_unbundled_indicator_2_has_microseconds_and_whole_volume() -> None:
    tick = normalise.trade_unbundled(decode_binary(TRADE_146), ES, RECEIVED, Occurrences())
    assert (tick.timestamp, tick.price, tick.size, tick.side, tick.source) == (
        datetime(2024, 3, 1, 14, 30, 0, 123456, tzinfo=UTC), Decimal("5123.25"), Decimal(3),
        "buy", "dtc.trade",
    )  # fmt: skip


def test_a_float_bid_ask_with_microseconds_skips_the_unset_side() -> None:
    ticks = normalise.bid_ask_us(decode_binary(QUOTE_144), ES, RECEIVED, Occurrences())
    assert [(t.side, t.price, t.size, t.timestamp) for t in ticks] == [
        ("bid", Decimal("5123"), Decimal("7"), datetime(2024, 3, 1, 14, 30, 0, 654321, tzinfo=UTC))
    ]


# More of the same header, by hand.
TRADE_142 = f.trade_142(1, price=5123.25, volume=3, at=m.AT_ASK)
QUOTE_143 = f.bid_ask_143(1, bid=5123.0, bid_size=12, ask=5123.5, ask_size=4_000_000)
TRADE_137 = f.trade_137(1, price=5123.5, volume=7, time_s=1709303400.25, at=m.AT_BID,
                        unbundled=1)  # fmt: skip
LAST_134 = f.last_trade_134(1, price=5122.75, volume=2.0, time_s=1709303399.875)
AT = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def test_a_trade_with_unbundled_indicator_has_milliseconds_and_whole_volume() -> None:
    tick = normalise.trade_unbundled_ms(decode_binary(TRADE_137), ES, RECEIVED, Occurrences())
    assert (tick.timestamp, tick.price, tick.size, tick.side, tick.source) == (
        AT.replace(microsecond=250000),
        Decimal("5123.5"),
        Decimal(7),
        "sell",
        "dtc.trade",
    )


def test_a_trade_without_timestamp_takes_the_prior_trades_and_counts_as_another() -> None:
    occurrences = Occurrences()
    first = normalise.trade_unbundled(decode_binary(TRADE_146), ES, RECEIVED, occurrences)
    again = normalise.trade_no_timestamp(decode_binary(TRADE_142), ES, RECEIVED, occurrences)
    # The same price, volume and side at the same time: a second real trade, another id.
    assert (again.timestamp, again.price, again.size, again.side) == (
        first.timestamp,
        first.price,
        first.size,
        first.side,
    )
    assert again.trade_id == derived_trade_id(
        "ESZ4", first.timestamp.isoformat(), 5123.25, 3.0, 2, 1
    )
    assert again.trade_id != first.trade_id


@pytest.mark.parametrize(
    ("frame", "normaliser"),
    [
        # 137 at 14:30:00.250, price 5123.5, volume 7, at the bid
        (TRADE_137, normalise.trade_unbundled_ms),
        # 146, pack(1), the same trade in µs; a float32 price that only rounds to 5123.1
        (f.trade_146(1, price=5123.1, volume=7, time_us=1709303400_250000, at=m.AT_BID),
         normalise.trade_unbundled),
    ],
)  # fmt: skip
def test_a_live_trade_and_its_history_tick_record_get_one_id(
    frame: bytes, normaliser: Callable[..., Tick]
) -> None:
    live = normaliser(decode_binary(frame), ES, RECEIVED, Occurrences())
    # The same trade as a gap fill fetches it: a HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE.
    record = f.tick_804(1709303400.25, at=m.AT_BID, price=float(live.price), volume=7.0)
    again = normalise.trade(decode_binary(record), ES, RECEIVED, Occurrences())
    assert again == live


def test_a_trade_without_timestamp_before_any_timed_trade_is_invalid() -> None:
    with pytest.raises(InvalidRecord, match="DateTime: a trade without a timestamp before"):
        normalise.trade_no_timestamp(decode_binary(TRADE_142), ES, RECEIVED, Occurrences())
    # A bid/ask time is no trade time.
    occurrences = Occurrences()
    normalise.bid_ask_us(decode_binary(QUOTE_144), ES, RECEIVED, occurrences)
    with pytest.raises(InvalidRecord, match="DateTime: a trade without a timestamp before"):
        normalise.trade_no_timestamp(decode_binary(TRADE_142), ES, RECEIVED, occurrences)


def test_a_bid_ask_without_timestamp_takes_the_prior_quotes_with_whole_quantities() -> None:
    occurrences = Occurrences()
    normalise.bid_ask_us(decode_binary(QUOTE_144), ES, RECEIVED, occurrences)
    ticks = normalise.bid_ask_no_timestamp(decode_binary(QUOTE_143), ES, RECEIVED, occurrences)
    when = AT.replace(microsecond=654321)
    assert [(t.side, t.price, t.size, t.timestamp, t.source) for t in ticks] == [
        ("bid", Decimal("5123"), Decimal(12), when, "dtc.quote"),
        ("ask", Decimal("5123.5"), Decimal(4_000_000), when, "dtc.quote"),
    ]
    with pytest.raises(InvalidRecord, match="DateTime: a bid/ask without a timestamp before"):
        normalise.bid_ask_no_timestamp(decode_binary(QUOTE_143), ES, RECEIVED, Occurrences())


def test_the_last_trade_snapshot_is_the_snapshots_last_trade_and_times_a_later_142() -> None:
    occurrences = Occurrences()
    (tick,) = normalise.last_trade_snapshot(decode_binary(LAST_134), ES, RECEIVED, occurrences)
    traded_at = datetime(2024, 3, 1, 14, 29, 59, 875000, tzinfo=UTC)
    assert tick == Tick(
        exchange="CME", symbol="ESZ4", timestamp=traded_at, source="dtc.snapshot",
        trade_id=derived_trade_id("ESZ4", traded_at.isoformat(), 5122.75, 2.0, "last"),
        price=Decimal("5122.75"), size=Decimal("2.0"), side=None, received_at=RECEIVED,
    )  # fmt: skip
    snapshot = decode_binary(encode_binary({
        "Type": m.MARKET_DATA_SNAPSHOT, "SymbolID": 1, "LastTradePrice": 5122.75,
        "LastTradeVolume": 2.0, "LastTradeDateTime": 1709303399.875,
    }))  # fmt: skip
    (same,) = normalise.snapshot(snapshot, ES, RECEIVED, Occurrences())
    assert same.trade_id == tick.trade_id
    assert normalise.trade_no_timestamp(decode_binary(TRADE_142), ES, RECEIVED,
                                        occurrences).timestamp == traded_at  # fmt: skip
    unset = f.last_trade_134(1, price=m.DBL_MAX, volume=0.0, time_s=0.0)
    assert normalise.last_trade_snapshot(decode_binary(unset), ES, RECEIVED, occurrences) == []


def test_an_older_snapshot_time_does_not_rewind_the_prior_trade_time() -> None:
    occurrences = Occurrences()
    live = normalise.trade_unbundled(decode_binary(TRADE_146), ES, RECEIVED, occurrences)
    normalise.last_trade_snapshot(decode_binary(LAST_134), ES, RECEIVED, occurrences)  # earlier
    later = normalise.trade_no_timestamp(decode_binary(TRADE_142), ES, RECEIVED, occurrences)
    assert later.timestamp == live.timestamp
    assert later.trade_id != live.trade_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1709303400, AT), (1709303400_250000, AT.replace(microsecond=250000)), (0, None)],
)
def test_the_history_trailers_time_is_seconds_or_microseconds_by_value(
    value: int, expected: datetime | None
) -> None:
    trailer = decode_binary(f.trailer_807(value))
    assert normalise.trailer_time(trailer) == expected


def test_a_history_trailer_time_out_of_range_is_invalid() -> None:
    trailer = decode_binary(f.trailer_807(-5))
    with pytest.raises(InvalidRecord, match="FinalRecordLastDateTime"):
        normalise.trailer_time(trailer)


def test_a_historical_tick_is_the_live_trade() -> None:
    live = trade_message()
    record = decode_binary(encode_binary({
        "Type": m.HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE, "RequestID": 1,
        "DateTime": live["DateTime"], "AtBidOrAsk": live["AtBidOrAsk"], "Price": live["Price"],
        "Volume": live["Volume"],
    }))  # fmt: skip
    assert normalise.trade(record, ES, RECEIVED, Occurrences()) == normalise.trade(
        live, ES, RECEIVED, Occurrences()
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"DateTime": 0.0}, "DateTime: unset"),
        ({"DateTime": m.DBL_MAX}, "DateTime: unset"),
        ({"DateTime": -5.0}, r"DateTime: epoch s -5 is outside \[1970-01-01, 2100-01-01\)"),
        ({"DateTime": 4102444800.0}, r"DateTime: epoch s 4102444800 is outside"),
        ({"DateTime": 1.7e308}, r"DateTime: epoch number out of range: about 309 digits"),
        ({"DateTime": float("nan")}, "DateTime: must be a finite epoch number"),
        ({"Price": m.DBL_MAX}, r"Price: unset \(DBL_MAX\)"),
        ({"Price": float("inf")}, "Price: must be a finite number"),
        ({"Volume": -1.0}, "size: must not be negative"),
    ],
)
def test_broken_trades_are_invalid_records(fields: dict[str, float], error: str) -> None:
    with pytest.raises(InvalidRecord, match=error):
        normalise.trade(trade_message(**fields), ES, RECEIVED, Occurrences())


def test_a_truncated_trade_has_no_time_and_is_invalid() -> None:
    full = encode_binary({"Type": 107, "SymbolID": 1, "Price": 1.0, "Volume": 1.0,
                          "DateTime": 1709303400.0})  # fmt: skip
    short = decode_binary(b"\x20\x00" + full[2:32])  # everything but DateTime
    with pytest.raises(InvalidRecord, match="DateTime: unset"):
        normalise.trade(short, ES, RECEIVED, Occurrences())


@pytest.mark.parametrize(
    ("text", "instrument", "venue"),
    [("ESZ4@CME", Instrument("ESZ4", "CME"), "CME"), (" CLZ4 ", Instrument("CLZ4"), "SIERRA"),
     ("BTCUSD@coinbase", Instrument("BTCUSD", "coinbase"), "COINBASE")],
)  # fmt: skip
def test_instruments_parse_from_the_command_line(
    text: str, instrument: Instrument, venue: str
) -> None:
    assert Instrument.parse(text) == instrument
    assert instrument.venue == venue
    with pytest.raises(InvalidRecord):
        Instrument.parse("@CME")
