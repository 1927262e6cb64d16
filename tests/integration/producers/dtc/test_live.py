"""Live DTC market data through the protocol-level fake server into a real broker."""

from __future__ import annotations

import asyncio
import logging
import signal
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.dlq import HEADER_REASON
from marketdata.errors import MarketDataError
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from producers.dtc import messages as m
from producers.dtc.codec import encode_binary
from producers.dtc.live import DtcLive
from producers.dtc.normalise import Instrument, Occurrences, trade
from producers.dtc.session import DtcSession, Endpoint
from producers.publisher import Publisher
from sandbox.dtc import FakeDtc, fixture, fixture_trades
from tests import dtc_frames as f
from tests.integration.polling import wait_until
from tests.integration.processors.support import read_ticks, read_topic
from tests.integration.roles import role_process

ES = Instrument("ESZ4", "CME")
NQ = Instrument("NQZ4", "CME")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDtc]:
    server = FakeDtc()
    await server.start()
    yield server
    await server.aclose()


class Live:
    """Starts a DtcLive against the fake, publishing into the test's topics."""

    def __init__(self, settings: Settings, fake: FakeDtc) -> None:
        self.settings, self.fake = settings, fake
        self.producer = create_producer(settings)
        self.live: DtcLive | None = None

    async def start(self, instruments: Sequence[Instrument] = (ES,), encoding: str = "binary",
                    subscribed: int = 1, history: bool = False) -> DtcLive:  # fmt: skip
        self.live = self.made(instruments, encoding, history)
        await ensure_topics(self.settings, self.settings.topics.all())
        await self.producer.start()
        await self.live.start()
        await wait_until(lambda: self.fake.subscriptions >= subscribed, within=15, step=0.02)
        return self.live

    def made(self, instruments: Sequence[Instrument], encoding: str = "binary",
             history: bool = False) -> DtcLive:  # fmt: skip
        """A DtcLive on the fake, not started; ``history``: with the fake's historical port."""
        endpoint = Endpoint("127.0.0.1", self.fake.port, encoding, heartbeat_s=1)
        past = Endpoint("127.0.0.1", self.fake.historical_port, encoding, heartbeat_s=1)
        publisher = Publisher(self.producer, self.settings.topics, stage="dtc.live")
        return DtcLive(endpoint, instruments, publisher, max_backoff_s=0.3,
                       history=past if history else None)  # fmt: skip

    async def aclose(self) -> None:
        if self.live is not None:
            await asyncio.wait_for(self.live.aclose(), 30)
        await self.producer.stop()


@pytest.fixture
async def runner(settings: Settings, fake: FakeDtc) -> AsyncIterator[Live]:
    live = Live(settings, fake)
    try:
        yield live
    finally:
        await live.aclose()


def expected(trades: Sequence[dict[str, Any]]) -> list[tuple[datetime, Decimal, Decimal, str]]:
    """What the fixture's trades must become, worked out without the normaliser."""
    sides = {1: "sell", 2: "buy"}
    return [(EPOCH + timedelta(milliseconds=round(t["DateTime"] * 1000)), Decimal(str(t["Price"])),
             Decimal(str(t["Volume"])), sides[t["AtBidOrAsk"]]) for t in trades]  # fmt: skip


def summary(ticks: Sequence[Tick]) -> list[tuple[datetime, Decimal, Decimal, str | None]]:
    return [(t.timestamp, t.price, t.size, t.side) for t in ticks]


@pytest.mark.parametrize("encoding", ["binary", "json"])
async def test_live_trades_arrive_once_with_the_servers_timestamps(
    runner: Live, fake: FakeDtc, settings: Settings, encoding: str
) -> None:
    live = await runner.start(encoding=encoding)
    trades = fixture_trades()
    for t in trades:
        assert await fake.trade("ESZ4", t) == 1
    await wait_until(lambda: live.stats.records >= len(trades), within=15, step=0.02)
    ticks = await read_ticks(settings, settings.topics.ticks_raw, key=b"CME:ESZ4")
    assert summary(ticks) == expected(trades)
    assert {(t.exchange, t.symbol, t.source) for t in ticks} == {("CME", "ESZ4", "dtc.trade")}
    assert len({t.trade_id for t in ticks}) == len(trades)  # two identical trades stay two
    occurrences = Occurrences()
    assert [t.trade_id for t in ticks] == [
        trade(t, ES, ticks[0].received_at, occurrences).trade_id for t in trades
    ]
    assert fake.received[0]["Type"] == m.ENCODING_REQUEST
    logon = next(msg for msg in fake.received if msg["Type"] == m.LOGON_REQUEST)
    assert (logon["HeartbeatIntervalInSeconds"], logon["ClientName"]) == (1, "mdp")


async def test_snapshot_and_quotes_become_bid_and_ask_ticks(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    fake.snapshots["ESZ4"] = fixture("ESZ4_snapshot.json")["snapshot"]
    live = await runner.start()
    await fake.push("ESZ4", {"Type": m.MARKET_DATA_UPDATE_BID_ASK_COMPACT, "BidPrice": 5123.5,
                             "BidQuantity": 9.0, "AskPrice": 5123.75, "AskQuantity": 4.0,
                             "DateTime": 1709303401})  # fmt: skip
    await wait_until(lambda: live.stats.records >= 5, within=15, step=0.02)
    ticks = await read_ticks(settings, settings.topics.ticks_raw)
    at = datetime(2024, 3, 1, 14, 30, 1, tzinfo=UTC)
    quoted = datetime(2024, 3, 1, 14, 29, 59, 900000, tzinfo=UTC)
    assert [(t.source, t.side, t.price, t.size, t.timestamp) for t in ticks] == [
        ("dtc.snapshot", "bid", Decimal("5123.0"), Decimal("24.0"), quoted),
        ("dtc.snapshot", "ask", Decimal("5123.25"), Decimal("31.0"), quoted),
        ("dtc.snapshot", None, Decimal("5123.25"), Decimal("2.0"),
         datetime(2024, 3, 1, 14, 29, 59, 875000, tzinfo=UTC)),
        ("dtc.quote", "bid", Decimal("5123.5"), Decimal("9"), at),
        ("dtc.quote", "ask", Decimal("5123.75"), Decimal("4"), at),
    ]  # fmt: skip


async def test_heartbeat_loss_reconnects_and_resubscribes(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    fake.heartbeats = False  # the connection stays open; the server goes quiet
    await wait_until(lambda: fake.subscriptions >= 2, within=15, step=0.05)
    assert "silent for more than" in live.stats.last_error  # the loop's watchdog
    fake.heartbeats = True
    trades = fixture_trades()[:5]
    for t in trades:
        await fake.trade("ESZ4", t)
    await wait_until(lambda: live.stats.records >= 5, within=15, step=0.02)
    assert summary(await read_ticks(settings, settings.topics.ticks_raw)) == expected(trades)
    assert live.stats.reconnects >= 1
    assert fake.logons >= 2


async def test_a_dropped_connection_reconnects_and_resubscribes_every_symbol(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start([ES, NQ], subscribed=2)
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.02)
    await fake.drop_connections()
    await wait_until(lambda: fake.subscriptions >= 4, within=15, step=0.02)
    await fake.trade("NQZ4", {**fixture_trades()[1], "Price": 18000.25})
    await wait_until(lambda: live.stats.records >= 2, within=15, step=0.02)
    ticks = await read_ticks(settings, settings.topics.ticks_raw)
    assert sorted((t.symbol, t.price) for t in ticks) == [  # two keys: two partitions
        ("ESZ4", Decimal("5123.25")),
        ("NQZ4", Decimal("18000.25")),
    ]
    assert live.stats.reconnects == 1
    assert "closed the connection" in live.stats.last_error
    # Per instrument: each lost the connection once, and the gap was not fetched again live.
    assert {symbol: (i.reconnects, i.gaps_unfilled, i.gaps_filled)
            for symbol, i in live.stats.instruments.items()} == {
        "ESZ4": (1, 1, 0), "NQZ4": (1, 1, 0)}  # fmt: skip


async def test_a_feed_back_after_an_outage_is_subscribed_again_on_the_same_connection(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start([ES, NQ], subscribed=2)
    await fake.push("ESZ4", {"Type": m.MARKET_DATA_FEED_STATUS, "Status": m.FEED_UNAVAILABLE})
    await wait_until(lambda: live.stats.feed_available is False, within=15, step=0.02)
    await fake.push("ESZ4", {"Type": m.MARKET_DATA_FEED_STATUS, "Status": m.FEED_AVAILABLE})
    await wait_until(lambda: fake.subscriptions >= 4, within=15, step=0.02)
    await fake.trade("NQZ4", {**fixture_trades()[1], "Price": 18000.25})
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.02)
    assert [(t.symbol, t.price) for t in await read_ticks(settings, settings.topics.ticks_raw)] == [
        ("NQZ4", Decimal("18000.25"))
    ]
    assert (live.stats.resubscribes, live.stats.reconnects, fake.logons) == (1, 0, 1)
    assert live.stats.feed_available is True
    assert [i.gaps_unfilled for i in live.stats.instruments.values()] == [1, 1]


async def test_after_a_drop_each_instruments_gap_is_asked_of_the_historical_port(
    runner: Live, fake: FakeDtc
) -> None:
    live = await runner.start([ES, NQ], subscribed=2, history=True)
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.02)
    dropped = int(time.time())
    await fake.drop_connections()
    await wait_until(lambda: all(i.gaps_filled for i in live.stats.instruments.values()),
                     within=15, step=0.02)  # fmt: skip
    asked = [(r["Symbol"], r["RecordInterval"]) for r in fake.history_requests]
    assert asked == [("ESZ4", 0), ("NQZ4", 0)]  # trades, from the second the gap began
    assert all(dropped <= r["StartDateTime"] <= time.time() for r in fake.history_requests)
    assert [(i.reconnects, i.gaps_filled, i.gaps_unfilled, i.gap_records)
            for i in live.stats.instruments.values()] == [(1, 1, 0, 0), (1, 1, 0, 0)]  # fmt: skip
    assert fake.subscriptions == 4


async def test_a_connection_lost_while_the_feed_is_away_is_filled_from_when_the_feed_went(
    runner: Live, fake: FakeDtc
) -> None:
    live = await runner.start([ES], history=True)
    await fake.push("ESZ4", {"Type": m.MARKET_DATA_FEED_STATUS, "Status": m.FEED_UNAVAILABLE})
    await wait_until(lambda: live.stats.feed_available is False, within=15, step=0.02)
    went = int(time.time())
    await asyncio.sleep(1.1)  # the drop in a later second than the feed's outage
    await fake.drop_connections()
    await wait_until(lambda: live.stats.instruments["ESZ4"].gaps_filled == 1, within=15,
                     step=0.02)  # fmt: skip
    [asked] = fake.history_requests
    assert went - 1 <= asked["StartDateTime"] <= went


async def test_a_gap_fill_publishes_the_trades_missed_with_the_ids_they_got_live(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    """The hooks as the loop calls them: trades served live, then a gap since before them
    filled from history: each trade twice, under one id (one row downstream)."""
    await ensure_topics(settings, settings.topics.all())
    await runner.producer.start()
    live = runner.made([ES], history=True)
    session = await live.open()
    trades = fixture_trades()
    until = asyncio.Event()
    serving = asyncio.create_task(live.serve(session, until))
    await wait_until(lambda: fake.subscriptions >= 1, within=15, step=0.02)
    for t in trades:
        await fake.trade("ESZ4", t)
    await wait_until(lambda: live.stats.records >= len(trades), within=15, step=0.02)
    until.set()
    assert (await serving).kind == "stopped"
    await live.fill_gap(session, datetime(2024, 3, 1, 14, 30, tzinfo=UTC))
    await live.close(session)
    await live.finish()
    ticks = await read_ticks(settings, settings.topics.ticks_raw)
    assert len(ticks) == 2 * len(trades)
    live_ids = [t.trade_id for t in ticks[: len(trades)]]
    assert [t.trade_id for t in ticks[len(trades) :]] == live_ids
    assert summary(ticks[len(trades) :]) == expected(trades)
    es = live.stats.instruments["ESZ4"]
    assert (es.gaps_filled, es.gaps_unfilled, es.gap_records) == (1, 0, len(trades))


async def test_a_gap_fill_cut_midway_publishes_what_came_and_counts_the_gap_unfilled(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    await ensure_topics(settings, settings.topics.all())
    await runner.producer.start()
    live = runner.made([ES, NQ], history=True)
    session = await live.open()
    fake.history_cut_after = 5  # ESZ4's history breaks after 5 trades; NQZ4's is whole
    await live.fill_gap(session, datetime(2024, 3, 1, 14, 30, tzinfo=UTC))
    await live.close(session)
    await live.finish()
    assert summary(await read_ticks(settings, settings.topics.ticks_raw)) == expected(
        fixture_trades()[:5]
    )
    assert [(i.gaps_filled, i.gaps_unfilled, i.gap_records)
            for i in live.stats.instruments.values()] == [(0, 1, 5), (1, 0, 0)]  # fmt: skip
    assert [r["Symbol"] for r in fake.history_requests] == ["ESZ4", "NQZ4"]


async def test_a_reject_is_reported_with_the_servers_text_and_others_go_on(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    fake.rejects["NQZ4"] = "No market data permission for NQZ4"
    live = await runner.start([NQ, ES])
    await wait_until(lambda: bool(live.stats.rejects), within=15, step=0.02)
    assert live.stats.rejects == {"NQZ4@CME": "No market data permission for NQZ4"}
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.02)
    assert [t.symbol for t in await read_ticks(settings, settings.topics.ticks_raw)] == ["ESZ4"]
    assert live.stats.reconnects == 0


async def test_the_current_headers_microsecond_trade_and_quote_are_stored(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    # Built by hand from the current header (tests/dtc_frames.py), SymbolID 1 (ESZ4).
    trade_146 = f.trade_146(1, price=5123.25, volume=3, time_us=1709303400_123456, at=m.AT_BID)
    quote_144 = f.bid_ask_144(1, bid=5123.0, bid_size=7.0, ask=5123.5, ask_size=2.0,
                              time_us=1709303400_654321)  # fmt: skip
    await fake.send_raw(trade_146)
    await fake.send_raw(quote_144)
    await wait_until(lambda: live.stats.records >= 3, within=15, step=0.02)
    ticks = await read_ticks(settings, settings.topics.ticks_raw, key=b"CME:ESZ4")
    at = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    assert [(t.source, t.side, t.price, t.size, t.timestamp) for t in ticks] == [
        ("dtc.trade", "sell", Decimal("5123.25"), Decimal(3), at.replace(microsecond=123456)),
        ("dtc.quote", "bid", Decimal("5123"), Decimal("7"), at.replace(microsecond=654321)),
        ("dtc.quote", "ask", Decimal("5123.5"), Decimal("2"), at.replace(microsecond=654321)),
    ]  # fmt: skip
    assert (live.stats.malformed, live.stats.ignored) == (0, 0)


async def test_the_current_headers_other_trade_quote_and_snapshot_variants_are_published(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    # By hand from the current header (tests/dtc_frames.py), SymbolID 1 (ESZ4).
    last_134 = f.last_trade_134(1, price=5122.75, volume=2.0, time_s=1709303399.875)
    no_time_142 = f.trade_142(1, price=5123.0, volume=4, at=m.AT_ASK)
    trade_137 = f.trade_137(1, price=5123.5, volume=7, time_s=1709303400.25, at=m.AT_BID,
                            unbundled=1)  # fmt: skip
    quote_143 = f.bid_ask_143(1, bid=5123.25, bid_size=12, ask=5123.5, ask_size=30)
    quote_144 = f.bid_ask_144(1, bid=5123.0, bid_size=7.0, ask=5123.5, ask_size=2.0,
                              time_us=1709303400_654321)  # fmt: skip
    # A 143 before any timed quote has no time to take: a dead letter, the rest goes on.
    await fake.send_raw(last_134 + no_time_142 + trade_137 + no_time_142 + quote_143)
    await fake.send_raw(quote_144 + quote_143)
    await wait_until(lambda: live.stats.records >= 8 and live.stats.malformed >= 1, within=15,
                     step=0.02)  # fmt: skip
    ticks = await read_ticks(settings, settings.topics.ticks_raw, key=b"CME:ESZ4")
    at = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
    last = datetime(2024, 3, 1, 14, 29, 59, 875000, tzinfo=UTC)
    quoted = at.replace(microsecond=654321)
    assert [(t.source, t.side, t.price, t.size, t.timestamp) for t in ticks] == [
        ("dtc.snapshot", None, Decimal("5122.75"), Decimal("2.0"), last),
        ("dtc.trade", "buy", Decimal("5123"), Decimal(4), last),  # the prior trade's time
        ("dtc.trade", "sell", Decimal("5123.5"), Decimal(7), at.replace(microsecond=250000)),
        ("dtc.trade", "buy", Decimal("5123"), Decimal(4), at.replace(microsecond=250000)),
        ("dtc.quote", "bid", Decimal("5123"), Decimal("7"), quoted),
        ("dtc.quote", "ask", Decimal("5123.5"), Decimal("2"), quoted),
        ("dtc.quote", "bid", Decimal("5123.25"), Decimal(12), quoted),  # the prior quote's
        ("dtc.quote", "ask", Decimal("5123.5"), Decimal(30), quoted),
    ]  # fmt: skip
    assert {(t.exchange, t.symbol) for t in ticks} == {("CME", "ESZ4")}
    assert len({t.trade_id for t in ticks}) == len(ticks)
    letters = await read_topic(settings, settings.topics.dlq, until=1)
    assert [dict(msg.headers)[HEADER_REASON].decode() for msg in letters] == [
        "malformed DTC MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP: DateTime: a bid/ask without a "
        "timestamp before any with one"
    ]
    assert letters[0].value == quote_143
    assert (live.stats.malformed, live.stats.ignored) == (1, 0)


async def test_an_unhandled_type_is_counted_each_time_and_logged_once(
    runner: Live, fake: FakeDtc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producers.dtc.live")
    live = await runner.start()
    # s_MarketDataUpdateSessionNumTrades (135), pack(8), current header: SymbolID, int32
    # NumTrades, t_DateTime4Byte TradingSessionDate: session statistics, no tick.
    num_trades = struct.pack("<HHIiI", 16, 135, 1, 98765, 1709251200)
    session_volume = b"\x08\x00\x71\x00\x01\x00\x00\x00"
    await fake.send_raw(num_trades + num_trades + session_volume)
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1 and live.stats.ignored >= 3, within=15,
                     step=0.02)  # fmt: skip
    assert live.stats.ignored == 3
    lines = [r.getMessage() for r in caplog.records if "not handled" in r.getMessage()]
    assert sorted(lines) == [
        "DTC message type 113 (MARKET_DATA_UPDATE_SESSION_VOLUME) is not handled by this "
        "producer: skipped and counted (logged once per type)",
        "DTC message type 135 (MARKET_DATA_UPDATE_SESSION_NUM_TRADES) is not handled by this "
        "producer: skipped and counted (logged once per type)",
    ]


@pytest.mark.parametrize(
    ("version", "why"),
    [(7, "older versions lay messages out otherwise"),
     (9, "the current DTCProtocol.h's; no newer layouts are published")],
)  # fmt: skip
async def test_a_server_of_another_protocol_version_is_refused(
    fake: FakeDtc, version: int, why: str
) -> None:
    fake.protocol_version = version
    session = DtcSession(Endpoint("127.0.0.1", fake.port, "binary", heartbeat_s=1))
    with pytest.raises(MarketDataError) as caught:
        await session.start()
    assert str(caught.value) == (
        f"DTC server {session.endpoint} speaks protocol version {version} (in its "
        f"ENCODING_RESPONSE); this client reads version 8 only ({why})"
    )
    assert not caught.value.retriable
    assert fake.logons == 0


async def test_a_newer_version_in_the_logon_response_alone_is_refused_too(
    runner: Live, fake: FakeDtc
) -> None:
    # A server that answers the encoding request with 8 and logs on with 9: the producer
    # stops with the reason instead of retrying, and subscribes to nothing.
    fake.logon_protocol_version = 9
    live = runner.made([ES])
    with pytest.raises(MarketDataError) as caught:
        await asyncio.wait_for(live.run(asyncio.Event()), 15)
    assert "speaks protocol version 9 (in its LOGON_RESPONSE)" in str(caught.value)
    assert not caught.value.retriable
    assert fake.subscriptions == 0


async def test_bad_messages_are_dead_lettered_and_the_stream_goes_on(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    await fake.send_unknown_type(9999)
    await fake.send_short("ESZ4", {"Type": m.MARKET_DATA_UPDATE_TRADE, "Price": 1.0,
                                   "Volume": 1.0, "DateTime": 1709303400.0}, 32)  # fmt: skip
    await fake.push("ESZ4", {"Type": m.MARKET_DATA_FEED_STATUS, "Status": m.FEED_AVAILABLE})
    await fake.send_raw(b"\x08\x00\x71\x00\x01\x00\x00\x00")  # session volume: skipped, counted
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1 and live.stats.malformed >= 2, within=15,
                     step=0.02)  # fmt: skip
    letters = await read_topic(settings, settings.topics.dlq, until=2)
    reasons = sorted(dict(msg.headers)[HEADER_REASON].decode() for msg in letters)
    assert reasons == [
        "malformed DTC MARKET_DATA_UPDATE_TRADE: DateTime: unset",
        "undecodable DTC message: unknown DTC message type 9999",
    ]
    assert [t.price for t in await read_ticks(settings, settings.topics.ticks_raw)] == [
        Decimal("5123.25")
    ]
    assert live.stats.ignored == 1
    assert live.stats.feed_available is True
    assert live.stats.reconnects == 0


async def test_an_insane_size_drops_the_connection_and_reconnects(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    await fake.send_oversized(60_000)
    await wait_until(lambda: fake.subscriptions >= 2, within=15, step=0.02)
    assert "message size 60000 outside [4, 16384]" in live.stats.last_error
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1, within=15, step=0.02)
    [letter] = await read_topic(settings, settings.topics.dlq, until=1)
    assert letter.value is not None
    assert letter.value.startswith(b"\x60\xea")  # the garbage, kept as it came


async def _reasons(settings: Settings, count: int) -> list[tuple[str, bytes]]:
    letters = await read_topic(settings, settings.topics.dlq, until=count)
    return [(dict(msg.headers)[HEADER_REASON].decode(), msg.value or b"") for msg in letters]


async def test_a_json_frame_nested_10000_deep_is_dead_lettered_and_the_stream_goes_on(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start(encoding="json")
    nested = b'{"Type":107,"Price":' + b"[" * 10_000 + b"]" * 10_000 + b"}\0"
    await fake.send_raw(nested)
    await fake.trade("ESZ4", fixture_trades()[0])
    await wait_until(lambda: live.stats.records >= 1 and live.stats.malformed >= 1, within=15,
                     step=0.02)  # fmt: skip
    [(reason, value)] = await _reasons(settings, 1)
    assert reason.startswith("undecodable DTC message: malformed DTC JSON: RecursionError")
    assert value == nested[:-1]
    assert summary(await read_ticks(settings, settings.topics.ticks_raw)) == expected(
        fixture_trades()[:1]
    )
    assert live.stats.reconnects == 0


async def test_a_valid_binary_trade_in_the_same_read_as_garbage_is_published(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    garbage = struct.pack("<HH", 0, m.MARKET_DATA_UPDATE_TRADE) + b"\xab" * 30
    await fake.send_around("ESZ4", {"Type": m.MARKET_DATA_UPDATE_TRADE, **fixture_trades()[0]},
                           after=garbage)  # fmt: skip
    await wait_until(lambda: live.stats.records >= 1 and live.stats.malformed >= 1, within=15,
                     step=0.02)  # fmt: skip
    assert summary(await read_ticks(settings, settings.topics.ticks_raw)) == expected(
        fixture_trades()[:1]
    )
    [(reason, value)] = await _reasons(settings, 1)
    assert reason == "garbage in the DTC stream: message size 0 outside [4, 16384]"
    assert value == garbage  # only the bytes that could not be cut, as they came
    # No sync marker in binary DTC: the session starts afresh and the stream goes on.
    await wait_until(lambda: fake.subscriptions >= 2, within=15, step=0.02)
    await fake.trade("ESZ4", fixture_trades()[1])
    await wait_until(lambda: live.stats.records >= 2, within=15, step=0.02)
    assert live.stats.reconnects == 1


async def test_a_valid_json_trade_between_garbage_frames_is_published(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start(encoding="json")
    await fake.send_around("ESZ4", {"Type": m.MARKET_DATA_UPDATE_TRADE, **fixture_trades()[0]},
                           before=b"\x01\x02{garbage\0", after=b"[1,2\xff\0")  # fmt: skip
    await wait_until(lambda: live.stats.records >= 1 and live.stats.malformed >= 2, within=15,
                     step=0.02)  # fmt: skip
    assert summary(await read_ticks(settings, settings.topics.ticks_raw)) == expected(
        fixture_trades()[:1]
    )
    letters = await _reasons(settings, 2)
    assert sorted(value for _, value in letters) == [b"\x01\x02{garbage", b"[1,2\xff"]
    assert all(r.startswith("undecodable DTC message: malformed DTC JSON") for r, _ in letters)
    assert live.stats.reconnects == 0


async def test_a_message_cut_off_by_the_close_is_dead_lettered(
    runner: Live, fake: FakeDtc, settings: Settings
) -> None:
    live = await runner.start()
    full = encode_binary({"Type": m.MARKET_DATA_UPDATE_TRADE, "SymbolID": 1,
                          **fixture_trades()[0]})  # fmt: skip
    await fake.send_raw(full[:21])
    await asyncio.sleep(0.2)
    await fake.drop_connections()
    await wait_until(lambda: live.stats.malformed >= 1, within=15, step=0.02)
    [(reason, value)] = await _reasons(settings, 1)
    assert reason.startswith("truncated DTC message when the connection closed")
    assert value == full[:21]


async def test_logoff_reconnects_unless_told_not_to(runner: Live, fake: FakeDtc) -> None:
    live = await runner.start()
    await fake.logoff("Server restarting")
    await wait_until(lambda: fake.subscriptions >= 2, within=15, step=0.02)
    assert live.stats.last_error == "DTC server logged off: Server restarting"
    await fake.logoff("Account disabled", do_not_reconnect=True)
    task = live._task
    assert task is not None
    await asyncio.wait_for(asyncio.wait({task}), 15)
    with pytest.raises(MarketDataError, match="logged off: Account disabled"):
        task.result()
    live._task = None


async def test_the_producer_process_streams_and_stops_cleanly(
    fake: FakeDtc,
    settings: Settings,
    log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    await ensure_topics(settings, settings.topics.all())
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "DTC_PORT": str(fake.port),
           "DTC_ENCODING": "json", "DTC_HEARTBEAT_S": "1", "DTC_PASSWORD": "hunter2"}  # fmt: skip
    fake.password = "hunter2"  # a logon without it is refused
    process = role_process(["produce", "dtc", "--symbols", "ESZ4@CME"], env, log)
    processes.append(process)
    await wait_until(lambda: fake.subscriptions >= 1, within=30, step=0.05)
    await fake.send_raw(b"[" * 10_000 + b"]" * 10_000 + b"\0")  # killed the process once
    trades = fixture_trades()[:10]
    for t in trades:
        await fake.trade("ESZ4", t)
    ticks = await read_ticks(settings, settings.topics.ticks_raw)
    assert summary(ticks) == expected(trades)
    [(reason, _)] = await _reasons(settings, 1)
    assert "RecursionError" in reason
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    assert "hunter2" not in await asyncio.to_thread(log.read_text)
