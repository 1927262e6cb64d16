"""`mdp backfill ibkr` against the fake TWS (which enforces IB's pacing), into a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from marketdata.dlq import HEADER_REASON
from marketdata.errors import MarketDataError
from marketdata.kafka import ensure_topics
from marketdata.records import Bar
from marketdata.settings import Settings
from producers.ibkr.backfill import backfill
from producers.ibkr.contracts import parse_spec
from producers.ibkr.normalise import BARS
from sandbox.tws import FakeTws, history_bar
from tests.integration.processors.support import read_bars, read_topic
from tests.integration.producers.support import stored_bar

START = datetime(2024, 3, 1, tzinfo=UTC)
AAPL = parse_spec("STK:AAPL:SMART:USD")


@pytest.fixture
async def ib_settings(settings: Settings, fake: FakeTws) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    return settings.model_copy(update={"ibkr_port": fake.port, "ibkr_timeout_s": 5.0})


def minutes(start: datetime, end: datetime, skip: set[int] | None = None) -> list[int]:
    first, last = int(start.timestamp()), int(end.timestamp())
    return [t for t in range(first, last, 60) if t not in (skip or set())]


async def published(settings: Settings) -> list[Bar]:
    return await read_bars(settings, settings.topics.bars_raw, key=b"IBKR:AAPL")


def assert_exact(bars: list[Bar], times: list[int]) -> None:
    assert sorted(int(b.timestamp.timestamp()) for b in bars) == times  # each bar once
    for bar in bars:
        o, h, low, c, volume, _, count = history_bar(
            "AAPL", "1 min", int(bar.timestamp.timestamp())
        )
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count) == (
            Decimal(o),
            Decimal(h),
            Decimal(low),
            Decimal(c),
            Decimal(volume),
            count,
        )
        assert (bar.interval, bar.closed, bar.source) == ("1m", True, "ibkr.bars")


async def test_many_requests_give_the_exact_bar_set_within_ibs_pacing(
    ib_settings: Settings, fake: FakeTws
) -> None:
    end = START + timedelta(days=12)
    closed_day = set(minutes(START + timedelta(days=2), START + timedelta(days=3)))
    fake.gaps = closed_day  # a day without trading: IB answers 162 "no data"
    seen: list[tuple[int, int]] = []
    result = await backfill(ib_settings, AAPL, "1m", START, end,
                            progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen == [(n, 12) for n in range(1, 13)]
    assert (result.requests, result.bars, fake.count(20)) == (12, 11 * 1440, 12)
    assert fake.pacing_violations == 0
    assert result.waited_s > 2  # six requests for one contract within 2 s had to wait
    assert_exact(await published(ib_settings), minutes(START, end, closed_day))


async def test_a_pacing_violation_is_waited_out_and_retried(
    ib_settings: Settings, fake: FakeTws
) -> None:
    fake.pacing_errors = 1
    end = START + timedelta(hours=3)
    result = await backfill(ib_settings, AAPL, "1m", START, end, retry_wait_s=0.5)
    assert (result.retries, result.bars, fake.count(20)) == (1, 180, 2)
    assert_exact(await published(ib_settings), minutes(START, end))


async def test_resume_continues_below_the_oldest_stored_bar(
    ib_settings: Settings, services: object
) -> None:
    oldest = START + timedelta(hours=2)
    async with stored_bar(ib_settings, "IBKR", "AAPL", "1m", oldest, source=BARS):
        result = await backfill(ib_settings, AAPL, "1m", START, START + timedelta(hours=5),
                                resume=True)  # fmt: skip
    assert (result.end, result.bars) == (oldest, 120)
    assert_exact(await published(ib_settings), minutes(START, oldest))


async def test_a_historical_frame_of_another_layout_is_a_dead_letter_naming_the_counts(
    ib_settings: Settings, fake: FakeTws
) -> None:
    # One more field a bar than server version 176's 17 frame has (IB's decoder: reqId,
    # startDate, endDate, itemCount, then date, open, high, low, close, volume, wap, barCount):
    # ib_async alone would read every bar after the first from the wrong fields.
    fake.history_bar_extra = ("0",)
    end = START + timedelta(hours=3)
    result = await asyncio.wait_for(backfill(ib_settings, AAPL, "1m", START, end), 30)
    assert (result.bars, result.rejected, fake.count(20)) == (0, 1, 1)
    [letter] = await read_topic(ib_settings, ib_settings.topics.dlq, until=1)
    assert dict(letter.headers)[HEADER_REASON] == (
        b"message: historical data (17) at server version 176 with 1440 bars has 11525 fields,"
        b" got 12965"
    )
    fields = json.loads(letter.value)["fields"]  # the whole frame, one window of a day
    assert (fields[0], fields[4], len(fields)) == ("17", "1440", 12965)
    assert await published(ib_settings) == []


async def test_a_tws_older_than_server_version_175_is_refused_before_any_history_request(
    ib_settings: Settings, fake: FakeTws
) -> None:
    fake.server_version = 174  # MIN_SERVER_VER_HMDS_MARKET_DATA_IN_SHARES - 1: volumes in lots
    with pytest.raises(MarketDataError) as caught:
        await backfill(ib_settings, AAPL, "1m", START, START + timedelta(hours=3))
    assert str(caught.value) == (
        f"TWS/IB Gateway at 127.0.0.1:{fake.port} speaks API server version 174; server"
        " version 175 or newer is needed (bar volumes in shares, not lots): upgrade TWS/IB"
        " Gateway"
    )
    assert not caught.value.retriable
    assert (fake.count(9), fake.count(20)) == (0, 0)  # no contract details, no history asked
    assert await published(ib_settings) == []


async def test_an_unknown_contract_fails_naming_it(ib_settings: Settings) -> None:
    with pytest.raises(MarketDataError, match=r"STK:NOPE:SMART:USD: IB error 200: No security"):
        await backfill(ib_settings, parse_spec("STK:NOPE:SMART:USD"), "1m", START,
                       START + timedelta(hours=1))  # fmt: skip


async def test_cli_shows_progress_and_a_summary(ib_settings: Settings, fake: FakeTws) -> None:
    # A subprocess run from the event loop that serves the fake, so that the fake can answer.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "backfill", "ibkr", "--symbol", "STK:AAPL:SMART:USD",
        "--bar-size", "5m", "--start", "2024-03-01", "--end", "2024-03-15",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": ib_settings.kafka_bootstrap,
             "MDP_TOPIC_PREFIX": ib_settings.topic_prefix, "IBKR_PORT": str(fake.port)},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert (
        "4032 bars of AAPL 5m before 2024-03-15 00:00 published to"
        f" {ib_settings.topics.bars_raw} in 2 requests"
    ) in stdout.decode()
    assert "STK:AAPL:SMART:USD 5m" in stderr.decode()  # the progress bar's label
    # startApi's client id: IBKR_CLIENT_ID + 1, so that it runs beside the live producer
    assert [r[2] for r in fake.requests if r[0] == "71"] == ["2"]
