"""`mdp produce binance` stops promptly on SIGTERM, with code 0, also while Binance is away: its
connection attempts (a blocking connect in a thread) and backoff waits honour the stop."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from marketdata.settings import Settings
from tests.integration.producers.support import closed_port, stopped_while_the_venue_is_away


@pytest.mark.parametrize("venue", ["refusing", "silent"])
async def test_sigterm_stops_the_producer_while_binance_is_away(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]], venue: str
) -> None:
    code = await stopped_while_the_venue_is_away(
        settings, log, processes, venue=venue,
        args=["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade,bookTicker"],
        venue_env=lambda port: {"BINANCE_STREAM_URL": f"ws://127.0.0.1:{port}",
                                "BINANCE_API_BASE_URL": f"http://127.0.0.1:{closed_port()}"},
        retrying="retry in",
    )  # fmt: skip
    assert code == 0
    text = await asyncio.to_thread(log.read_text)
    assert "Traceback" not in text
    assert "ERROR" not in text
