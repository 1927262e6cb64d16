"""The live IB producer, in this process, against the fake TWS and a real broker."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from marketdata.dlq import HEADER_REASON
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from producers.ibkr.contracts import parse_specs
from producers.ibkr.live import IbkrLive, LiveOptions
from producers.ibkr.run import run_live
from producers.publisher import Publisher
from producers.reconnect import ReconnectLoop
from sandbox.tws import FakeTws, history_bar, recorded_trades
from sandbox.tws_wire import frame
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port, read_bars, read_ticks, read_topic
from tests.integration.producers.endpoints import Endpoints
from tests.integration.roles import role_process

SPECS = "STK:AAPL:SMART:USD,FUT:ES:CME:USD:202412"
T0 = 1_709_305_200  # 2024-03-01 15:00:00 UTC

Launch = Callable[..., Awaitable[IbkrLive]]
IBKR = (("venue", "ibkr"),)
AAPL = (("symbol", "AAPL"), ("venue", "ibkr"))
LAST_DATA = ("mdp_producer_seconds_since_last_data", AAPL)


@pytest.fixture
async def start(settings: Settings, fake: FakeTws) -> AsyncIterator[Launch]:
    """Starts the producer with given specs and options; stops it at the end of the test."""
    await ensure_topics(settings, settings.topics.all())
    configured = settings.model_copy(update={"ibkr_port": fake.port, "ibkr_timeout_s": 3.0})
    producer = create_producer(configured)
    await producer.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def launch(specs: str = SPECS, **options: object) -> IbkrLive:
        chosen = LiveOptions(max_backoff_s=0.5, **options)  # type: ignore[arg-type]
        publisher = Publisher(producer, configured.topics, stage="ibkr.live")
        live = IbkrLive(configured, parse_specs(specs), publisher, chosen)
        tasks.append(asyncio.create_task(ReconnectLoop(live, chosen.timing()).run(stop)))
        await wait_until(lambda: bool(live.subscriptions) or tasks[-1].done(), within=15)
        if tasks[-1].done():
            tasks.pop().result()  # the producer gave up: its error
        return live

    yield launch
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    await producer.stop()


def _subscribed(fake: FakeTws, kind: str, count: int) -> Callable[[], bool]:
    return lambda: len(fake.subscribed(kind)) >= count


async def _ticks(settings: Settings) -> list[Tick]:
    return await read_ticks(settings, settings.topics.ticks_raw)


async def _bars(settings: Settings) -> list[Bar]:
    return await read_bars(settings, settings.topics.bars_raw)


def _bar_values(bar: Bar) -> tuple[str, ...]:
    return tuple(str(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume))


async def test_trades_and_bars_arrive_once_with_the_exchanges_time(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start()
    await wait_until(_subscribed(fake, "AllLast", 2))
    await wait_until(_subscribed(fake, "bars", 2))
    recorded = recorded_trades()
    for symbol in ("AAPL", "ESZ4"):
        for row in recorded[symbol]:
            fake.publish_trade(symbol, T0 + row["offset_s"], row)
    for n in range(3):
        fake.publish_bar("AAPL", T0 + 5 * n)
    expected = len(recorded["AAPL"]) + len(recorded["ESZ4"]) + 3
    await wait_until(lambda: live.stats.records >= expected, within=15, step=0.05)

    ticks = await _ticks(settings)
    aapl = [t for t in ticks if t.symbol == "AAPL"]
    assert [
        (t.timestamp, str(t.price), str(t.size), (t.extras or {}).get("venue")) for t in aapl
    ] == [
        (datetime.fromtimestamp(T0 + r["offset_s"], UTC), r["price"], r["size"], r["venue"])
        for r in recorded["AAPL"]
    ]
    assert len({t.trade_id for t in aapl}) == len(aapl)  # the two identical prints stay two
    assert all(t.exchange == "IBKR" and t.source == "ibkr.AllLast" for t in ticks)
    assert all(t.received_at > t.timestamp for t in ticks)  # wire time, not arrival time
    assert sorted({t.symbol for t in ticks}) == ["AAPL", "ESZ4"]
    assert [t.extras for t in aapl][4] == {"venue": "FINRA", "unreported": True,
                                           "conditions": "I F"}  # fmt: skip

    bars = await _bars(settings)
    assert [(b.symbol, b.interval, b.timestamp, b.closed, b.source) for b in bars] == [
        ("AAPL", "5s", datetime.fromtimestamp(T0 + 5 * n, UTC), True, "ibkr.bars") for n in range(3)
    ]
    assert [_bar_values(b) for b in bars] == [
        history_bar("AAPL", "5 secs", T0 + 5 * n)[:5] for n in range(3)
    ]
    assert bars[0].trade_count == history_bar("AAPL", "5 secs", T0)[6]


async def test_quotes_become_bid_and_ask_ticks(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", ticks=None, quotes=True, bars=False)
    await wait_until(_subscribed(fake, "BidAsk", 1))
    fake.publish_quote("AAPL", T0, {"bid": "189.51", "ask": "189.53", "bid_size": "300",
                                    "ask_size": "200"})  # fmt: skip
    await wait_until(lambda: live.stats.records >= 2, within=15, step=0.05)
    ticks = await _ticks(settings)
    assert [(t.side, t.price, t.size, t.source) for t in ticks] == [
        ("bid", Decimal("189.51"), Decimal("300"), "ibkr.BidAsk"),
        ("ask", Decimal("189.53"), Decimal("200"), "ibkr.BidAsk"),
    ]
    assert fake.subscribed("AllLast") == []
    assert fake.subscribed("bars") == []


async def test_a_bad_contract_or_a_refused_subscription_fails_alone(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    fake.reject_ticks = {"MSFT"}
    live = await start("STK:NOPE:SMART:USD,STK:MSFT:SMART:USD,STK:AAPL:SMART:USD", bars=False)
    await wait_until(lambda: live.stats.failed_requests == 1)
    assert [spec.text for spec in live.rejected] == ["STK:NOPE:SMART:USD"]
    assert "No security definition has been found" in next(iter(live.rejected.values()))
    assert fake.subscribed("AllLast") == ["AAPL"]
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 1, within=15, step=0.05)
    assert [t.symbol for t in await _ticks(settings)] == ["AAPL"]


async def test_no_instrument_at_all_is_an_error_naming_them(
    start: Launch,
) -> None:
    from marketdata.errors import MarketDataError  # noqa: PLC0415

    with pytest.raises(MarketDataError, match=r"STK:NOPE:SMART:USD: IB error 200"):
        await start("STK:NOPE:SMART:USD")


async def test_a_tws_older_than_server_version_175_is_refused_and_the_run_ends(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    from marketdata.errors import MarketDataError  # noqa: PLC0415

    fake.server_version = 174  # bar volumes in lots
    with pytest.raises(MarketDataError) as caught:
        await start("STK:AAPL:SMART:USD")
    assert not caught.value.retriable
    assert "server version 174; server version 175 or newer is needed" in str(caught.value)
    assert fake.connections == 1  # not retried
    assert fake.count(50) == 0  # nothing subscribed
    assert fake.count(97) == 0


async def test_a_malformed_message_is_dead_lettered_and_the_stream_goes_on(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", bars=False)
    await wait_until(_subscribed(fake, "AllLast", 1))
    [req_id] = fake.clients[0].ticks
    fake.send_raw(frame(99, req_id, 2, T0, "12..5", "100", 0, "NASDAQ", ""))
    fake.send_raw(frame(99, 424242, 2, T0, "12.5", "100", 0, "NASDAQ", ""))
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 1 and live.stats.malformed == 2, within=15)
    dead = await read_topic(settings, settings.topics.dlq, until=2)
    reasons = sorted(dict(m.headers)[HEADER_REASON].decode() for m in dead)
    assert reasons == [
        "message for no subscription of this producer",
        "price: not a number: '12..5'",
    ]
    assert dead[0].value.split(b"\0")[0] == b"99"
    assert len(await _ticks(settings)) == 1


async def test_frames_of_another_layout_than_the_server_versions_are_dead_letters(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD")
    await wait_until(lambda: bool(fake.subscribed("AllLast")) and bool(fake.subscribed("bars")))
    [tick_id] = fake.clients[0].ticks
    [bar_id] = fake.clients[0].bars
    # A newer TWS's extra trailing field: every value before it would still parse.
    fake.send_raw(frame(99, tick_id, 2, T0, "12.5", "100", 0, "NASDAQ", "", "1"))
    fake.send_raw(frame(50, 3, bar_id, T0, "1", "2", "0.5", "1.5", "100", "1.2", 4, "7"))
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 1 and live.stats.malformed == 2, within=15)
    dead = await read_topic(settings, settings.topics.dlq, until=2)
    found = sorted((m.value.split(b"\0")[0], dict(m.headers)[HEADER_REASON].decode())
                   for m in dead)  # fmt: skip
    assert found == [
        (b"50", "message: a real-time bar at server version 176 has 11 fields, got 12"),
        (b"99", "message: a tick-by-tick message at server version 176 has 9 fields, got 10"),
    ]
    assert await _bars(settings) == []


async def test_a_dropped_connection_reconnects_resubscribes_and_fills_the_missed_bars(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", ticks=None)
    await wait_until(_subscribed(fake, "bars", 1))
    now = int(time.time()) // 5 * 5
    first = now - 30
    for n in range(3):
        fake.publish_bar("AAPL", first + 5 * n)
    await wait_until(lambda: live.stats.records >= 3, within=15, step=0.05)
    fake.drop()
    await wait_until(lambda: live.stats.connections == 2 and live.stats.gap_records >= 3, within=20)
    assert fake.count(50) == 2  # real-time bars requested again on the new connection
    bars = await _bars(settings)
    end = max(b.timestamp for b in bars)
    expected = list(range(first, int(end.timestamp()) + 5, 5))
    assert sorted({int(b.timestamp.timestamp()) for b in bars}) == expected
    assert len(expected) >= 6
    assert all(b.closed for b in bars)
    for bar in bars:  # historical bars went through ib_async's floats: equal values, not text
        source = history_bar("AAPL", "5 secs", int(bar.timestamp.timestamp()))
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == tuple(
            Decimal(v) for v in source[:5]
        )
    # Real-time and historical bars are one series with one source (a bar's key holds it).
    assert {b.source for b in bars} == {"ibkr.bars"}
    aapl = live.stats.instruments["AAPL"]
    assert (aapl.reconnects, aapl.gaps_filled, aapl.gaps_unfilled) == (1, 1, 0)
    # The topic holds the three real-time bars published above, the rest came from the gap fill.
    assert aapl.gap_records == live.stats.gap_records == len(bars) - 3
    assert len(live.stats.gaps) == 1


async def test_tws_closing_during_qualification_is_reconnected_then_qualified_and_published(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    fake.drop_on = {9: 1}  # the first reqContractDetails closes the connection
    live = await start("STK:AAPL:SMART:USD", bars=False)
    # The first connection ended before it was a session: one session opened, the loss known.
    assert (fake.connections, fake.count(9), live.stats.connections) == (2, 2, 1)
    assert "contract qualification interrupted" in live.stats.last_error
    assert [c.localSymbol for c in live.contracts.values()] == ["AAPL"]
    assert live.rejected == {}  # a lost connection is no verdict on the contract
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 1, within=15, step=0.05)
    assert [(t.symbol, str(t.price)) for t in await _ticks(settings)] == [
        ("AAPL", recorded_trades()["AAPL"][0]["price"])
    ]


async def test_tws_closing_during_subscription_is_reconnected_and_resubscribed(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    fake.drop_on = {97: 1}  # the first tick-by-tick request closes the connection
    live = await start("STK:AAPL:SMART:USD", bars=False)
    await wait_until(lambda: fake.subscribed("AllLast") == ["AAPL"], within=15)
    assert fake.connections == 2
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 1, within=15, step=0.05)
    assert [t.symbol for t in await _ticks(settings)] == ["AAPL"]


async def _two_bars(start: Launch, fake: FakeTws) -> tuple[IbkrLive, int]:
    """A bars-only producer that has published two bars, 30 and 25 s old; the first's time."""
    live = await start("STK:AAPL:SMART:USD", ticks=None)
    await wait_until(_subscribed(fake, "bars", 1))
    first = int(time.time()) // 5 * 5 - 30
    for n in range(2):
        fake.publish_bar("AAPL", first + 5 * n)
    await wait_until(lambda: live.stats.records >= 2, within=15, step=0.05)
    return live, first


async def test_tws_closing_during_the_gap_fill_is_reconnected_and_the_gap_filled(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live, first = await _two_bars(start, fake)
    fake.drop_on = {20: 1}  # the gap fill's reqHistoricalData closes the new connection
    fake.drop()
    await wait_until(lambda: live.stats.connections >= 3 and live.stats.gap_records >= 3, within=30)
    assert fake.count(20) == 2  # asked again on the third connection
    bars = await _bars(settings)
    end = max(b.timestamp for b in bars)
    assert sorted({int(b.timestamp.timestamp()) for b in bars}) == list(
        range(first, int(end.timestamp()) + 5, 5)
    )


async def test_1101_data_lost_resubscribes_and_1102_data_kept_carries_on(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", bars=False)
    await wait_until(_subscribed(fake, "AllLast", 1))
    trade = recorded_trades()["AAPL"][0]

    fake.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    await asyncio.sleep(0.3)
    fake.publish_trade("AAPL", T0, trade)
    await asyncio.sleep(0.5)
    assert live.stats.records == 0  # held back while TWS has no link to IB
    fake.send_error(1102, "Connectivity between IB and Trader Workstation has been restored"
                    " - data maintained.")  # fmt: skip
    await wait_until(lambda: live.stats.records == 1, within=10, step=0.05)
    assert (fake.count(97), live.stats.resubscribes, live.stats.gaps) == (1, 0, [])

    lost = datetime.now(UTC)
    fake.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    fake.send_error(1101, "Connectivity between IB and Trader Workstation has been restored"
                    " - data lost.")  # fmt: skip
    await wait_until(lambda: fake.count(97) == 2, within=10)
    assert (fake.count(98), live.stats.resubscribes) == (1, 1)  # the old one cancelled
    assert fake.subscribed("AllLast") == ["AAPL"]
    fake.publish_trade("AAPL", T0 + 1, trade)
    await wait_until(lambda: live.stats.records == 2, within=10, step=0.05)
    assert [t.timestamp.second for t in await _ticks(settings)] == [0, 1]
    # Trades are not fetched again: the gap since the 1100 is marked and left unfilled.
    assert (fake.connections, live.stats.instruments["AAPL"].gaps_unfilled) == (1, 1)
    [(since, _)] = live.stats.gaps
    assert since >= lost


async def test_1101_with_bars_resubscribes_and_fills_the_bars_since_the_newest_on_the_session(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live, first = await _two_bars(start, fake)
    fake.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    fake.send_error(1101, "Connectivity between IB and Trader Workstation has been restored"
                    " - data lost.")  # fmt: skip
    await wait_until(lambda: live.stats.instruments["AAPL"].gaps_filled == 1, within=15)
    # On the same connection: bars cancelled and requested again, the missed ones fetched.
    assert (fake.connections, fake.count(51), fake.count(50), fake.count(20)) == (1, 1, 2, 1)
    assert (live.stats.resubscribes, live.stats.reconnects) == (1, 0)
    bars = await _bars(settings)
    end = max(b.timestamp for b in bars)
    assert sorted({int(b.timestamp.timestamp()) for b in bars}) == list(
        range(first, int(end.timestamp()) + 5, 5)
    )
    # The two real-time bars of _two_bars, the rest from the gap fill.
    assert live.stats.gap_records == len(bars) - 2 >= 4


async def test_1100_not_restored_in_time_replaces_the_session_and_releases_what_it_held(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", bars=False, restore_s=2.0)
    await wait_until(_subscribed(fake, "AllLast", 1))
    fake.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    await asyncio.sleep(0.3)
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await asyncio.sleep(0.5)
    assert live.stats.records == 0  # held back while TWS has no link to IB
    await wait_until(lambda: live.stats.connections == 2, within=15)
    await wait_until(lambda: live.stats.records == 1, within=10, step=0.05)
    assert (fake.connections, fake.count(97)) == (2, 2)
    assert live.stats.reconnects == 1
    assert "no restored link to IB within 2 s" in live.stats.last_error
    fake.publish_trade("AAPL", T0 + 1, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records == 2, within=10, step=0.05)
    assert [t.timestamp.second for t in await _ticks(settings)] == [0, 1]


async def test_a_silent_connection_is_replaced(
    start: Launch, fake: FakeTws, settings: Settings
) -> None:
    live = await start("STK:AAPL:SMART:USD", bars=False, watchdog_s=1.0)
    await wait_until(_subscribed(fake, "AllLast", 1))
    fake.silent = True  # the socket stays open; nothing is answered or sent
    await wait_until(lambda: fake.connections >= 2, within=20)
    fake.silent = False
    await wait_until(lambda: live.stats.connections >= 2 and bool(fake.subscribed("AllLast")),
                     within=30)  # fmt: skip
    fake.publish_trade("AAPL", T0, recorded_trades()["AAPL"][0])
    await wait_until(lambda: live.stats.records >= 1, within=10, step=0.05)
    assert [t.symbol for t in await _ticks(settings)] == ["AAPL"]


async def test_the_cli_role_streams_until_sigterm(
    settings: Settings, fake: FakeTws, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "IBKR_PORT": str(fake.port)}  # fmt: skip
    fake.drop_on = {9: 1}  # TWS closes during qualification: once a traceback and exit 1
    process = role_process(["produce", "ibkr", "--symbols", "STK:AAPL:SMART:USD,STK:NOPE:SMART:USD",
                            "--no-bars"], env, log)  # fmt: skip
    processes.append(process)
    await wait_until(_subscribed(fake, "AllLast", 1), within=30)
    assert fake.connections == 2
    for row in recorded_trades()["AAPL"]:
        fake.publish_trade("AAPL", T0 + row["offset_s"], row)
    ticks = await _ticks(settings)
    assert [str(t.price) for t in ticks] == [r["price"] for r in recorded_trades()["AAPL"]]
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    output = await asyncio.to_thread(log.read_text)
    assert "STK:NOPE:SMART:USD: IB error 200" in output
    assert "contract qualification interrupted" in output
    assert "Traceback" not in output


async def test_health_and_metrics_follow_the_tws_connection(
    settings: Settings, fake: FakeTws
) -> None:
    await ensure_topics(settings, settings.topics.all())
    port = free_port()
    configured = settings.model_copy(update={"ibkr_port": fake.port, "ibkr_timeout_s": 3.0,
                                             "producer_metrics_port": port})  # fmt: skip
    stop = asyncio.Event()
    options = LiveOptions(bars=True, ticks=None, max_backoff_s=0.5)
    running = asyncio.create_task(run_live(configured, parse_specs("STK:AAPL:SMART:USD"),
                                           options, stop))  # fmt: skip
    producer = Endpoints(port)
    again = FakeTws(port=fake.port)
    try:
        await producer.health(200)
        first = int(time.time()) // 5 * 5 - 10
        fake.publish_bar("AAPL", first)
        receiving = await producer.metrics_until(lambda s: s.get(LAST_DATA, 99) < 5)
        assert receiving[("mdp_producer_connected", IBKR)] == 1
        assert receiving[("mdp_producer_reconnects_total", AAPL)] == 0

        await fake.aclose()  # TWS goes away: the connection drops, new ones are refused
        await producer.health(503)
        lost = await producer.metrics()
        assert lost[("mdp_producer_connected", IBKR)] == 0
        assert lost[("mdp_producer_reconnects_total", AAPL)] == 1

        await again.start()
        await producer.health(200)
        back = await producer.metrics_until(
            lambda s: s[("mdp_producer_gaps_filled_total", AAPL)] == 1
        )
        assert back[("mdp_producer_gaps_unfilled_total", AAPL)] == 0
        assert again.count(20) == 1  # the gap's bars asked for on the new connection
    finally:
        stop.set()
        live = await asyncio.wait_for(running, 10)
        await again.aclose()
    assert (live.stats.connections, live.stats.reconnects) == (2, 1)
