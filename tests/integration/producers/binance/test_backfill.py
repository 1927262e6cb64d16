"""`mdp backfill binance` against the Binance-compatible fake, into a real broker."""

from __future__ import annotations

import asyncio
import json
import os
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
from producers.binance.backfill import backfill
from producers.binance.connector import rest_client
from producers.binance.history import KlinePager
from producers.binance.normalise import KLINES
from sandbox.binance import FakeBinance, RawJSON, kline_row
from tests.integration.processors.support import read_bars, read_topic
from tests.integration.producers.support import stored_bar

START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    server = FakeBinance(now_ms=int((START + timedelta(days=3)).timestamp() * 1000))
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def binance_settings(settings: Settings, fake: FakeBinance) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    return settings.model_copy(update={"binance_api_base_url": fake.rest_url})


def expected_bars(count: int, start: datetime = START) -> list[tuple[int, str, str]]:
    rows = [kline_row("BTCUSDT", "1m", int(start.timestamp() * 1000) + n * 60_000)
            for n in range(count)]  # fmt: skip
    return [(row[0], row[1], row[4]) for row in rows]


async def published_bars(settings: Settings) -> list[Bar]:
    return await read_bars(settings, settings.topics.bars_raw, key=b"BINANCE:BTCUSDT")


def _summary(bars: list[Bar]) -> list[tuple[int, str, str]]:
    return [(int(b.timestamp.timestamp() * 1000), f"{b.open:.8f}", f"{b.close:.8f}") for b in bars]


async def test_a_range_of_several_pages_gives_the_exact_bar_set(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    seen: list[tuple[int, int]] = []
    end = START + timedelta(minutes=2499)
    result = await backfill(binance_settings, "btcusdt", "1m", START, end,
                            progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert result.bars == 2500
    assert fake.klines_requests == 3  # 1000 + 1000 + 500
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    bars = await published_bars(binance_settings)
    assert _summary(bars) == expected_bars(2500)
    assert all(b.closed and b.source == "binance.kline" for b in bars)
    first = kline_row("BTCUSDT", "1m", int(START.timestamp() * 1000))
    assert (bars[0].high, bars[0].low, bars[0].volume, bars[0].trade_count) == (
        Decimal(first[2]),
        Decimal(first[3]),
        Decimal(first[5]),
        first[8],
    )


async def test_429_waits_for_retry_after_then_completes(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    fake.fail_next(429, retry_after=1)
    started = asyncio.get_running_loop().time()
    result = await backfill(binance_settings, "BTCUSDT", "1m", START, START + timedelta(minutes=9))
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert result.bars == 10
    assert result.waited_s == 1.0
    assert _summary(await published_bars(binance_settings)) == expected_bars(10)


async def test_used_weight_near_the_limit_slows_down(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    waits: list[float] = []
    fake.weight_used = 4798  # answers now report 4799, then 4801: past 80 % of 6000
    pager = KlinePager(rest_client(binance_settings), "BTCUSDT", "1m", START,
                       START + timedelta(minutes=2999), sleep=waits.append)  # fmt: skip
    result = await backfill(binance_settings, "BTCUSDT", "1m", START,
                            START + timedelta(minutes=2999), pager=pager)  # fmt: skip
    assert result.bars == 3000
    # The fake's counter never resets (its clock is not ours), so every request after the first
    # past-threshold answer waits for the next minute: 2 of the 3 page requests.
    assert len(waits) == 2
    assert all(0 < wait <= 60.5 for wait in waits)


async def test_a_bad_symbol_fails_with_binances_own_message(binance_settings: Settings) -> None:
    with pytest.raises(MarketDataError, match=r"Binance: Invalid symbol\. \(code -1121\)"):
        await backfill(binance_settings, "NOPE", "1m", START, START + timedelta(minutes=5))


async def test_a_ban_stops_and_says_until_when(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    fake.fail_next(418, retry_after=120, code=-1003, msg="Way too many requests; IP banned.")
    with pytest.raises(MarketDataError, match=r"banned this IP \(418\) until"):
        await backfill(binance_settings, "BTCUSDT", "1m", START, START + timedelta(minutes=5))


async def test_resume_starts_from_the_newest_stored_bar(
    binance_settings: Settings, services: object
) -> None:
    newest = START + timedelta(minutes=30)
    async with stored_bar(binance_settings, "BINANCE", "BTCUSDT", "1m", newest, source=KLINES):
        result = await backfill(binance_settings, "BTCUSDT", "1m", START,
                                START + timedelta(minutes=59), resume=True)  # fmt: skip
    assert result.started_at == newest
    assert result.bars == 30
    assert _summary(await published_bars(binance_settings)) == expected_bars(30, newest)


async def test_cli_shows_progress_and_a_summary(binance_settings: Settings) -> None:
    # A subprocess run from the event loop that serves the fake, so that the fake can answer.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "backfill", "binance", "--symbol", "BTCUSDT",
        "--interval", "1h", "--start", "2024-03-01", "--end", "2024-03-02T23:00",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": binance_settings.kafka_bootstrap,
             "MDP_TOPIC_PREFIX": binance_settings.topic_prefix,
             "BINANCE_API_BASE_URL": binance_settings.binance_rest},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert "48 bars of BTCUSDT 1h from 2024-03-01 00:00 published" in stdout.decode()
    assert "BTCUSDT 1h" in stderr.decode()  # the progress bar's label


async def test_a_venue_answering_in_microseconds_gives_the_exact_bar_set(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    fake.microseconds = True  # server time, open and close times all in µs
    end = START + timedelta(minutes=2499)
    result = await backfill(binance_settings, "BTCUSDT", "1m", START, end)
    assert result.bars == 2500
    assert fake.klines_requests == 3  # pages still follow each other: 1000 + 1000 + 500
    bars = await published_bars(binance_settings)
    assert _summary(bars) == expected_bars(2500)
    assert all(b.closed for b in bars)


async def test_asking_for_microseconds_pages_the_same(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    client = rest_client(binance_settings, time_unit="MICROSECOND")
    end = START + timedelta(minutes=1999)
    pager = KlinePager(client, "BTCUSDT", "1m", START, end)
    result = await backfill(binance_settings, "BTCUSDT", "1m", START, end, pager=pager)
    assert (result.bars, fake.klines_requests) == (2000, 2)
    assert _summary(await published_bars(binance_settings)) == expected_bars(2000)


async def test_a_page_with_a_bad_row_publishes_its_good_rows_and_dead_letters_the_bad(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    start_ms = int(START.timestamp() * 1000)
    micro = kline_row("BTCUSDT", "1m", start_ms + 3 * 60_000)
    # One row in µs among rows in ms (valid: the unit is read from the magnitude), and one whose
    # open time is no time at all.
    fake.bad_klines[start_ms + 3 * 60_000] = [micro[0] * 1000, *micro[1:6],
                                              micro[6] * 1000 + 999, *micro[7:]]  # fmt: skip
    broken = kline_row("BTCUSDT", "1m", start_ms + 6 * 60_000)
    fake.bad_klines[start_ms + 6 * 60_000] = [10**22, *broken[1:]]
    result = await backfill(binance_settings, "BTCUSDT", "1m", START, START + timedelta(minutes=9))
    assert (result.bars, result.rejected) == (9, 1)
    good = [row for n, row in enumerate(expected_bars(10)) if n != 6]
    assert _summary(await published_bars(binance_settings)) == good
    [letter] = await read_topic(binance_settings, binance_settings.topics.dlq, until=1)
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["mdp.origin"] == "binance.rest.klines"
    assert headers[HEADER_REASON].startswith("timestamp: ")
    assert json.loads(letter.value)[0] == 10**22


async def test_a_row_with_a_number_python_will_not_read_is_refused_alone(
    binance_settings: Settings, fake: FakeBinance
) -> None:
    start_ms = int(START.timestamp() * 1000)
    row = kline_row("BTCUSDT", "1m", start_ms + 4 * 60_000)
    fake.bad_klines[start_ms + 4 * 60_000] = RawJSON(json.dumps(["DIGITS", *row[1:]])
                                                      .replace('"DIGITS"', "9" * 5000))  # fmt: skip
    result = await backfill(binance_settings, "BTCUSDT", "1m", START, START + timedelta(minutes=9))
    assert (result.bars, result.rejected) == (9, 1)
    good = [row for n, row in enumerate(expected_bars(10)) if n != 4]
    assert _summary(await published_bars(binance_settings)) == good
    [letter] = await read_topic(binance_settings, binance_settings.topics.dlq, until=1)
    assert dict(letter.headers)[HEADER_REASON].startswith(b"timestamp: ")
    assert json.loads(letter.value)[0] == "9" * 5000
