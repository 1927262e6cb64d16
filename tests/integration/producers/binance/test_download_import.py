"""`mdp import binance-vision --start …` (download mode) against the loopback dump site, into a
real broker: the archives fetched are imported row for row, a missing one is reported in the
summary, and a second run takes the archives from the cache."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from sandbox.binance import kline_row
from sandbox.vision import FakeVision
from tests.integration.processors.support import read_bars


@pytest.fixture
async def site() -> AsyncIterator[FakeVision]:
    fake = FakeVision(published_until=date(2024, 10, 1))
    await fake.start()
    yield fake
    await fake.aclose()


async def mdp_import(settings: Settings, site: FakeVision, cache: Path) -> tuple[str, str]:
    # Run from the event loop that serves the fake, so that the fake can answer.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "import", "binance-vision", "--symbol", "BTCUSDT",
        "--kind", "klines", "--interval", "1h", "--start", "2024-09-29", "--end", "2024-10-02",
        "--cache", str(cache), "--concurrency", "2",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
             "MDP_TOPIC_PREFIX": settings.topic_prefix, "BINANCE_VISION_URL": site.url},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode(), stderr.decode()


def hours(*days: date) -> list[tuple[int, str, str]]:
    starts = [int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000) for d in days]
    rows = [
        kline_row("BTCUSDT", "1h", start + n * 3_600_000) for start in starts for n in range(24)
    ]
    return [(row[0], row[1], row[4]) for row in rows]


async def test_download_mode_imports_what_it_fetched_and_reports_what_is_missing(
    settings: Settings, site: FakeVision, tmp_path: Path
) -> None:
    await ensure_topics(settings, settings.topics.all())
    site.missing.add("BTCUSDT-1h-2024-09-30.zip")  # not listed that day
    stdout, stderr = await mdp_import(settings, site, tmp_path / "cache")
    assert "48 records from 2 files" in stdout
    assert "BTCUSDT-1h-2024-09-30.zip: not on the dump site (404)" in stdout
    assert "BTCUSDT-1h-2024-10-02.zip: not on the dump site (404)" in stdout  # not out yet
    assert "2 archives in" in stderr
    bars = await read_bars(settings, settings.topics.bars_raw, key=b"BINANCE:BTCUSDT")
    summary = [(int(b.timestamp.timestamp() * 1000), f"{b.open:.8f}", f"{b.close:.8f}")
               for b in bars]  # fmt: skip
    assert summary == hours(date(2024, 9, 29), date(2024, 10, 1))
    site.requests.clear()
    _, stderr = await mdp_import(settings, site, tmp_path / "cache")
    assert "(2 already there, 0.0 MB fetched)" in stderr
    assert site.fetched() == []


async def test_sandbox_mode_downloads_from_a_dump_server_of_its_own(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings, settings.topics.all())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "import", "binance-vision", "--symbol", "BTCUSDT",
        "--kind", "klines", "--interval", "1h", "--start", "2024-09-29", "--end", "2024-09-30",
        "--cache", str(tmp_path / "cache"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
             "MDP_TOPIC_PREFIX": settings.topic_prefix, "PROVIDERS_SANDBOX_MODE": "sandbox",
             "BINANCE_VISION_URL": ""},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert "sandbox mode: the dumps come from the sandbox's dump server" in stderr.decode()
    assert "48 records from 2 files" in stdout.decode()
    bars = await read_bars(settings, settings.topics.bars_raw, key=b"BINANCE:BTCUSDT")
    summary = [(int(b.timestamp.timestamp() * 1000), f"{b.open:.8f}", f"{b.close:.8f}")
               for b in bars]  # fmt: skip
    assert summary == hours(date(2024, 9, 29), date(2024, 9, 30))
