from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from ib_async.client import Client

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.ibkr.normalise import (
    LAYOUT_VERSIONS,
    TickIds,
    check_history_layout,
    check_layout,
    historical_bar,
    realtime_bar,
    tick_by_tick,
)

RECEIVED = datetime(2024, 3, 1, 15, 0, 7, 250_000, tzinfo=UTC)
WIRE_TIME = "1709305205"  # 2024-03-01 15:00:05 UTC, earlier than the arrival above
EXCHANGE_TIME = datetime(2024, 3, 1, 15, 0, 5, tzinfo=UTC)


def trade(
    price: str = "189.52", size: str = "100", *, kind: str = "2", mask: str = "0",
    venue: str = "NASDAQ", conditions: str = "", time: str = WIRE_TIME,
) -> list[str]:  # fmt: skip
    return ["99", "7", kind, time, price, size, mask, venue, conditions]


def test_an_all_last_trade_keeps_the_exchange_time_and_decimal_text() -> None:
    [tick] = tick_by_tick(trade(mask="2", conditions="I F"), "AAPL", RECEIVED, TickIds())
    assert tick == Tick(
        exchange="IBKR", symbol="AAPL", timestamp=EXCHANGE_TIME, source="ibkr.AllLast",
        trade_id=tick.trade_id, price=Decimal("189.52"), size=Decimal("100"), side=None,
        received_at=RECEIVED, extras={"venue": "NASDAQ", "unreported": True, "conditions": "I F"},
    )  # fmt: skip
    assert tick.timestamp != tick.received_at
    assert tick.trade_id.startswith("h:")


def test_a_last_trade_is_told_apart_by_its_source() -> None:
    [tick] = tick_by_tick(trade(kind="1", mask="1", price="6012.25", size="3", venue="CME"),
                          "ESZ4", RECEIVED, TickIds())  # fmt: skip
    assert (tick.source, tick.price, tick.size, tick.extras) == (
        "ibkr.Last",
        Decimal("6012.25"),
        Decimal("3"),
        {"venue": "CME", "past_limit": True},
    )


def test_a_bid_ask_tick_becomes_a_bid_and_an_ask() -> None:
    fields = ["99", "7", "3", WIRE_TIME, "189.51", "189.53", "300", "0.5", "3"]
    bid, ask = tick_by_tick(fields, "AAPL", RECEIVED, TickIds())
    flags = {"bid_past_low": True, "ask_past_high": True}
    assert (bid.side, bid.price, bid.size, bid.timestamp, bid.source, bid.extras) == (
        "bid",
        Decimal("189.51"),
        Decimal("300"),
        EXCHANGE_TIME,
        "ibkr.BidAsk",
        flags,
    )
    assert (ask.side, ask.price, ask.size, ask.extras) == (
        "ask",
        Decimal("189.53"),
        Decimal("0.5"),
        flags,
    )
    assert bid.trade_id == ask.trade_id  # one quote; the side tells the two apart in the key


def test_identical_prints_in_one_second_get_distinct_ids_stable_on_replay() -> None:
    stream = [trade(), trade(), trade(price="189.53"), trade(time="1709305206")]
    ids = TickIds()
    ids_once = [tick_by_tick(f, "AAPL", RECEIVED, ids)[0].trade_id for f in stream]
    replay = TickIds()
    ids_again = [tick_by_tick(f, "AAPL", datetime.now(UTC), replay)[0].trade_id for f in stream]
    assert len(set(ids_once)) == 4
    assert ids_once == ids_again  # arrival time plays no part


def test_ids_differ_between_symbols() -> None:
    ids = TickIds()
    assert (
        tick_by_tick(trade(), "AAPL", RECEIVED, ids)[0].trade_id
        != tick_by_tick(trade(), "MSFT", RECEIVED, ids)[0].trade_id
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (["99", "7", "2"], "message"),
        (["99", "7", "4", WIRE_TIME, "189.5"], "tickType"),
        (trade()[:-1], "message"),
        (trade(price="abc"), "price"),
        (trade(price="NaN"), "price"),
        (trade(size="-1"), "size"),
        (trade(time="1709305205000"), "timestamp"),
        (trade(time="-5"), "timestamp"),
        (trade(mask="x"), "mask"),
        (trade(mask="9" * 5000), "mask"),  # int() would raise ValueError past 4300 digits
        (trade(time="\u00b2"), "timestamp"),  # isdigit() is true, int() raises
        (trade(time="1" + "0" * 5000), "timestamp"),
        (trade(price="1" * 20_000 + "x"), "price"),
        (["99", "7", "3", WIRE_TIME, "1", "2", "3"], "message"),
    ],
)
def test_malformed_ticks_name_the_field(fields: list[str], field: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        tick_by_tick(fields, "AAPL", RECEIVED, TickIds())
    assert caught.value.field == field


BAR = ["50", "3", "9", WIRE_TIME, "189.5", "189.61", "189.42", "189.6", "1200", "189.55", "17"]
QUOTE = ["99", "7", "3", WIRE_TIME, "189.51", "189.53", "300", "200", "0"]


@pytest.mark.parametrize("version", [157, 175, 176, 178])
def test_frames_of_the_negotiated_layout_pass_the_check(version: int) -> None:
    for fields in (trade(), trade(kind="1"), QUOTE, BAR):
        check_layout(fields, version)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([*trade(), "x"], "a tick-by-tick message at server version 176 has 9 fields, got 10"),
        (trade()[:-1], "a tick-by-tick message at server version 176 has 9 fields, got 8"),
        ([*QUOTE, "1"], "a tick-by-tick message at server version 176 has 9 fields, got 10"),
        ([*BAR, "0"], "a real-time bar at server version 176 has 11 fields, got 12"),
        (BAR[:10], "a real-time bar at server version 176 has 11 fields, got 10"),
    ],
)
def test_a_frame_of_another_field_count_is_refused_naming_both(
    fields: list[str], reason: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_layout(fields, 176)
    assert str(caught.value) == f"message: {reason}"


@pytest.mark.parametrize("version", [156, 179, 200])
def test_a_server_version_of_unknown_layouts_refuses_every_frame(version: int) -> None:
    with pytest.raises(InvalidRecord, match=f"no known layout .* server version {version}"):
        check_layout(trade(), version)


# A 17 frame of server version 176 (IB's decoder, processHistoricalDataMsg, below
# MIN_SERVER_VER_HISTORICAL_DATA_END 196): reqId, startDate, endDate, itemCount, then 8 fields a
# bar: date, open, high, low, close, volume, wap, barCount.
HISTORY = ["17", "4", "20240301 15:00:00", "20240301 15:01:00", "1",
           WIRE_TIME, "189.5", "189.61", "189.42", "189.6", "1200", "189.55", "17"]  # fmt: skip


@pytest.mark.parametrize("version", [175, 176, 178])
def test_a_history_frame_of_the_negotiated_layout_passes(version: int) -> None:
    check_history_layout(HISTORY, version)
    check_history_layout([*HISTORY[:4], "0"], version)  # no bars


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([*HISTORY, "0"], "with 1 bars has 13 fields, got 14"),  # a field added to the bar
        (HISTORY[:-1], "with 1 bars has 13 fields, got 12"),
        ([*HISTORY[:4], "2", *HISTORY[5:]], "with 2 bars has 21 fields, got 13"),
        ([*HISTORY[:4], "-1"], "with -1 bars has -3 fields, got 5"),
        (["17", "4", "1"], "needs at least 5 fields, got 3"),
    ],
)
def test_a_history_frame_of_another_field_count_is_refused_naming_the_counts(
    fields: list[str], reason: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_history_layout(fields, 176)
    assert str(caught.value).startswith("message: historical data (17) at server version 176")
    assert str(caught.value).endswith(reason)


def test_a_history_frame_of_server_version_196s_layout_is_refused_at_176() -> None:
    # From 196 (MIN_SERVER_VER_HISTORICAL_DATA_END) the dates leave 17 for 108: such a frame
    # read with 176's layout would take a bar's open for the bar count.
    with pytest.raises(InvalidRecord) as caught:
        check_history_layout(["17", "4", "1", *HISTORY[5:]], 176)
    assert str(caught.value) == "itemCount: must be an integer, got '189.5'"


def test_history_values_ib_async_cannot_read_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_history_layout([*HISTORY[:7], "n/a", *HISTORY[8:]], 176)
    assert caught.value.field == "high"
    with pytest.raises(InvalidRecord) as caught:
        check_history_layout([*HISTORY[:4], "one"], 176)
    assert caught.value.field == "itemCount"


@pytest.mark.parametrize("version", [156, 179, 196])
def test_a_history_frame_at_a_server_version_of_unknown_layouts_is_refused(version: int) -> None:
    with pytest.raises(InvalidRecord, match=f"no known layout of historical data .* {version}"):
        check_history_layout(HISTORY, version)


def test_a_realtime_bar_is_a_closed_five_second_bar_at_its_open_time() -> None:
    fields = ["50", "3", "9", WIRE_TIME, "189.5", "189.61", "189.42", "189.6", "1200", "189.55",
              "17"]  # fmt: skip
    assert realtime_bar(fields, "AAPL") == Bar(
        exchange="IBKR", symbol="AAPL", interval="5s", timestamp=EXCHANGE_TIME,
        open=Decimal("189.5"), high=Decimal("189.61"), low=Decimal("189.42"),
        close=Decimal("189.6"), volume=Decimal("1200"), trade_count=17, closed=True,
        source="ibkr.bars",
    )  # fmt: skip
    unknown_count = [*fields[:10], "-1"]
    assert realtime_bar(unknown_count, "AAPL").trade_count is None
    with pytest.raises(InvalidRecord, match="high: is below low"):
        realtime_bar([*fields[:5], "189.0", "189.42", *fields[7:]], "AAPL")
    with pytest.raises(InvalidRecord) as caught:
        realtime_bar([*fields[:10], "many"], "AAPL")
    assert caught.value.field == "trade_count"


def test_historical_bars_from_ib_async_values() -> None:
    bar = historical_bar(EXCHANGE_TIME, (280.59, 281.03, 280.21, 280.97, 3552.0, 176), "AAPL",
                         "1m", closed=True)  # fmt: skip
    assert bar == Bar(
        exchange="IBKR", symbol="AAPL", interval="1m", timestamp=EXCHANGE_TIME,
        open=Decimal("280.59"), high=Decimal("281.03"), low=Decimal("280.21"),
        close=Decimal("280.97"), volume=Decimal("3552.0"), trade_count=176, closed=True,
        source="ibkr.bars",
    )  # fmt: skip
    daily = historical_bar(date(2024, 3, 1), (1.0, 1.0, 1.0, 1.0, -1.0, -1), "EUR.USD", "1d",
                           closed=False)  # fmt: skip
    assert (daily.timestamp, daily.volume, daily.trade_count, daily.closed) == (
        datetime(2024, 3, 1, tzinfo=UTC),
        Decimal("0.0"),
        None,
        False,
    )


def test_every_server_version_ib_async_may_negotiate_has_known_layouts() -> None:
    # A release of ib_async that negotiates a newer version fails here before it meets a TWS.
    negotiable = range(Client.MinClientVersion, Client.MaxClientVersion + 1)
    assert set(negotiable) <= set(LAYOUT_VERSIONS)
