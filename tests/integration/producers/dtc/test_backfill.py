"""DTC history (`mdp backfill dtc`) from the fake's historical port into a real broker."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from marketdata.dlq import HEADER_REASON
from marketdata.errors import MarketDataError
from marketdata.kafka import ensure_topics
from marketdata.records import Bar
from marketdata.settings import Settings
from producers.dtc.backfill import backfill
from producers.dtc.normalise import HISTORY, Instrument
from sandbox.dtc import FakeDtc, bar_record, fixture_trades
from tests.dtc_frames import trailer_807 as trailer
from tests.integration.processors.support import read_bars, read_ticks, read_topic
from tests.integration.producers.support import stored_bar

START = datetime(2024, 3, 1, 14, 0, tzinfo=UTC)
ES = Instrument("ESZ4", "CME")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDtc]:
    server = FakeDtc(now_s=int((START + timedelta(days=1)).timestamp()))
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def dtc_settings(settings: Settings, fake: FakeDtc) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    return settings.model_copy(update={"dtc_port": fake.port,
                                       "dtc_historical_port": fake.historical_port})  # fmt: skip


def expected_bars(minutes: range, symbol: str = "ESZ4") -> list[tuple[datetime, Decimal, Decimal]]:
    first = int(START.timestamp())
    rows = [bar_record(symbol, 60, first + 60 * n) for n in minutes]
    return [(datetime.fromtimestamp(r["StartDateTime"], UTC), Decimal(str(r["OpenPrice"])),
             Decimal(str(r["LastPrice"]))) for r in rows]  # fmt: skip


def summary(bars: list[Bar]) -> list[tuple[datetime, Decimal, Decimal]]:
    return [(b.timestamp, b.open, b.close) for b in bars]


@pytest.mark.parametrize("encoding", ["binary", "json"])
async def test_bars_of_a_range_arrive_exactly(
    dtc_settings: Settings, fake: FakeDtc, encoding: str
) -> None:
    configured = dtc_settings.model_copy(update={"dtc_encoding": encoding})
    seen: list[tuple[float, float]] = []
    result = await backfill(configured, ES, "1m", START, START + timedelta(minutes=599),
                            progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert result.records == 600
    [request] = fake.history_requests
    assert (request["Symbol"], request["Exchange"]) == ("ESZ4", "CME")
    assert request["RecordInterval"] == 60
    # Compressed where Sierra Chart compresses: binary only.
    assert request["UseZLibCompression"] == (encoding == "binary")
    bars = await read_bars(configured, configured.topics.bars_raw, key=b"CME:ESZ4")
    assert summary(bars) == expected_bars(range(600))
    first = bar_record("ESZ4", 60, int(START.timestamp()))
    assert (bars[0].high, bars[0].low, bars[0].volume, bars[0].trade_count) == (
        Decimal(str(first["HighPrice"])), Decimal(str(first["LowPrice"])),
        Decimal(str(first["Volume"])), first["NumTrades"],
    )  # fmt: skip
    assert all(b.closed and b.source == "dtc.history" and b.interval == "1m" for b in bars)
    assert seen[-1] == (36_000 - 60.0, 36_000 - 60.0)


async def test_bars_with_microsecond_times_are_stored_as_with_seconds(
    dtc_settings: Settings, fake: FakeDtc
) -> None:
    # The current DTCProtocol.h (navas8889/dtc-sdk) declares StartDateTime as
    # t_DateTimeWithMicrosecondsInt, "format can also be t_DateTime; check the value".
    fake.history_time_scale = 1_000_000
    result = await backfill(dtc_settings, ES, "1m", START, START + timedelta(minutes=9))
    assert result.records == 10
    bars = await read_bars(dtc_settings, dtc_settings.topics.bars_raw, key=b"CME:ESZ4")
    assert summary(bars) == expected_bars(range(10))


@pytest.mark.parametrize("compress", [True, False])
async def test_a_trailer_ends_a_response_whose_records_never_say_final(
    dtc_settings: Settings, fake: FakeDtc, compress: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fake.history_time_scale = 1_000_000
    fake.history_final_flag = False
    last = START + timedelta(minutes=9)
    fake.history_tail = trailer(int(last.timestamp()) * 1_000_000)
    result = await asyncio.wait_for(
        backfill(dtc_settings, ES, "1m", START, last, compress=compress), 20
    )
    # Ended by the trailer: one request, nothing retried, nothing dead-lettered or logged.
    assert (result.records, result.requests, result.rejected) == (10, 1, 0)
    bars = await read_bars(dtc_settings, dtc_settings.topics.bars_raw, key=b"CME:ESZ4")
    assert summary(bars) == expected_bars(range(10))
    assert not [r for r in caplog.records if "trailer" in r.getMessage()]


async def test_a_trailer_later_than_the_last_record_received_is_reported(
    dtc_settings: Settings, fake: FakeDtc, caplog: pytest.LogCaptureFixture
) -> None:
    fake.history_final_flag = False
    last = START + timedelta(minutes=9)
    fake.history_tail = trailer(int(last.timestamp()) + 60)  # in seconds: one bar more
    result = await backfill(dtc_settings, ES, "1m", START, last)
    assert (result.records, result.requests) == (10, 1)
    assert [r.getMessage() for r in caplog.records if "trailer" in r.getMessage()] == [
        "DTC history of ESZ4@CME 1m: the server's trailer says its last record is at "
        "2024-03-01T14:10:00+00:00, the newest received is at 2024-03-01T14:09:00+00:00"
    ]


async def test_a_trailer_whose_time_is_no_time_is_a_dead_letter_and_still_ends(
    dtc_settings: Settings, fake: FakeDtc
) -> None:
    fake.history_final_flag = False
    fake.history_tail = trailer(-5)
    result = await backfill(dtc_settings, ES, "1m", START, START + timedelta(minutes=4))
    assert (result.records, result.requests, result.rejected) == (5, 1, 1)
    [letter] = await read_topic(dtc_settings, dtc_settings.topics.dlq, until=1)
    assert letter.value == fake.history_tail
    assert dict(letter.headers)[HEADER_REASON] == (
        b"malformed DTC HISTORICAL_PRICE_DATA_RESPONSE_TRAILER: FinalRecordLastDateTime: "
        b"epoch s -5 is outside [1970-01-01, 2100-01-01) UTC"
    )


async def test_a_message_a_history_response_has_no_use_for_is_logged_once_per_type(
    dtc_settings: Settings, fake: FakeDtc, caplog: pytest.LogCaptureFixture
) -> None:
    fake.history_final_flag = False
    # s_MarketDataUpdateTrade (107, pack(8)): SymbolID 4, uint16 AtBidOrAsk 8, double Price 16,
    # Volume 24, DateTime 32; sizeof 40. A live trade where history records are expected.
    stray = struct.pack("<HHIH6xddd", 40, 107, 1, 2, 5123.25, 1.0, 1709303400.0)
    # s_UserMessage (700): char UserMessage[256], uint8 IsPopupMessage; sizeof 261. A type the
    # client has no struct for, yet the header defines.
    note = struct.pack("<HH256sB", 261, 700, b"Data feed delayed", 1)
    fake.history_tail = stray + note + stray + note + trailer(0)
    result = await backfill(dtc_settings, ES, "1m", START, START + timedelta(minutes=4))
    assert (result.records, result.requests, result.rejected) == (5, 1, 0)
    assert [r.getMessage() for r in caplog.records if "not handled" in r.getMessage()] == [
        f"DTC message type {type_} ({name}) in a history response is not handled: skipped"
        " (logged once per type)"
        for type_, name in ((107, "MARKET_DATA_UPDATE_TRADE"), (700, "USER_MESSAGE"))
    ]


async def test_ticks_come_with_the_ids_live_trades_get(dtc_settings: Settings) -> None:
    trades = fixture_trades()
    result = await backfill(dtc_settings, ES, "tick", START, START + timedelta(hours=1))
    assert result.records == len(trades)
    ticks = await read_ticks(dtc_settings, dtc_settings.topics.ticks_raw, key=b"CME:ESZ4")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [(t.timestamp, t.price, t.size) for t in ticks] == [
        (epoch + timedelta(milliseconds=round(t["DateTime"] * 1000)), Decimal(str(t["Price"])),
         Decimal(str(t["Volume"]))) for t in trades
    ]  # fmt: skip
    assert len({t.trade_id for t in ticks}) == len(trades)
    assert {t.source for t in ticks} == {"dtc.trade"}


async def test_a_reject_fails_with_the_servers_text(dtc_settings: Settings) -> None:
    with pytest.raises(MarketDataError, match="rejected history of NOPE@CME 1m: Symbol NOPE not"):
        await backfill(dtc_settings, Instrument("NOPE", "CME"), "1m", START, None)


async def test_busy_server_and_broken_stream_are_retried_from_the_last_record(
    dtc_settings: Settings, fake: FakeDtc
) -> None:
    fake.history_busy = 1  # "retry in 1 s"
    fake.history_cut_after = 250  # then the connection breaks after 250 bars
    result = await backfill(dtc_settings, ES, "1m", START, START + timedelta(minutes=499))
    assert result.requests == 3
    starts = [r["StartDateTime"] - int(START.timestamp()) for r in fake.history_requests]
    assert starts == [0, 0, 249 * 60]  # the last bar received is asked for again
    bars = await read_bars(dtc_settings, dtc_settings.topics.bars_raw)
    assert sorted(set(summary(bars))) == expected_bars(range(500))


async def test_garbage_in_a_history_stream_costs_only_the_garbage(
    dtc_settings: Settings, fake: FakeDtc
) -> None:
    fake.history_cut_after = 250
    fake.history_garbage = struct.pack("<HH", 2, 803) + b"\xee" * 10  # Size 2: not a message
    result = await backfill(dtc_settings, ES, "1m", START, START + timedelta(minutes=499),
                            compress=False)  # fmt: skip
    assert (result.requests, result.rejected) == (2, 1)
    starts = [r["StartDateTime"] - int(START.timestamp()) for r in fake.history_requests]
    assert starts == [0, 249 * 60]  # the 250 bars in the same read as the garbage arrived
    bars = await read_bars(dtc_settings, dtc_settings.topics.bars_raw)
    assert sorted(set(summary(bars))) == expected_bars(range(500))
    [letter] = await read_topic(dtc_settings, dtc_settings.topics.dlq, until=1)
    assert letter.value == fake.history_garbage
    assert dict(letter.headers)[HEADER_REASON] == (
        b"garbage in the DTC stream: message size 2 outside [4, 16384]"
    )


async def test_cli_resumes_from_the_newest_stored_bar_with_progress(
    dtc_settings: Settings, fake: FakeDtc, unique: str
) -> None:
    symbol = f"ES{unique}".upper()[:20]  # a series of this test's own in the shared database
    fake.symbols = (*fake.symbols, symbol)
    newest = START + timedelta(minutes=30)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": dtc_settings.kafka_bootstrap,
           "MARKET_DATA_DATABASE_URL": dtc_settings.database,
           "MDP_TOPIC_PREFIX": dtc_settings.topic_prefix, "DTC_HOST": "127.0.0.1",
           "DTC_HISTORICAL_PORT": str(fake.historical_port)}  # fmt: skip
    async with stored_bar(dtc_settings, "CME", symbol, "1m", newest, source=HISTORY):
        # Run from the loop that serves the fake, so that the fake can answer.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mdp", "backfill", "dtc", "--symbol", f"{symbol}@CME",
            "--interval", "1m", "--start", "2024-03-01T14:00", "--end", "2024-03-01T14:59",
            "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert (f"30 bars of {symbol}@CME 1m from 2024-03-01 14:30 published to "
            f"{dtc_settings.topics.bars_raw} in 1 request") in stdout.decode()  # fmt: skip
    assert f"{symbol}@CME 1m" in stderr.decode()  # the progress bar's label
    bars = await read_bars(dtc_settings, dtc_settings.topics.bars_raw)
    assert summary(bars) == expected_bars(range(30, 60), symbol)


async def test_cli_reports_a_reject_and_fails(dtc_settings: Settings, fake: FakeDtc) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "backfill", "dtc", "--symbol", "NOPE",
        "--interval", "1h", "--start", "2024-03-01", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": dtc_settings.kafka_bootstrap,
             "DTC_HISTORICAL_PORT": str(fake.historical_port)},
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "mdp: error: DTC server rejected history of NOPE 1h: Symbol NOPE not found" in (
        stderr.decode()
    )
