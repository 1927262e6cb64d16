"""Every producer stops within 2 s of SIGTERM, with code 0, also while its venue is away (issue
#15): connection attempts (Binance's a blocking connect in a thread) and backoff waits honour the
stop, whether the venue refuses connections or takes them and never answers."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from marketdata.settings import Settings
from tests.integration.producers.support import closed_port, stopped_while_the_venue_is_away

# venue: the producer's arguments, and its settings for a venue at a given port
VENUES: dict[str, tuple[list[str], Callable[[int], dict[str, str]]]] = {
    "binance": (
        ["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade,bookTicker"],
        lambda port: {"BINANCE_STREAM_URL": f"ws://127.0.0.1:{port}",
                      "BINANCE_API_BASE_URL": f"http://127.0.0.1:{closed_port()}"},
    ),
    "ibkr": (
        ["produce", "ibkr", "--symbols", "STK:AAPL:SMART:USD"],
        lambda port: {"IBKR_PORT": str(port)},
    ),
    "dtc": (
        ["produce", "dtc", "--symbols", "ESZ4@CME"],
        lambda port: {"DTC_PORT": str(port), "DTC_HISTORICAL_PORT": str(closed_port())},
    ),
}  # fmt: skip


@pytest.mark.parametrize("venue", ["refusing", "silent"])
@pytest.mark.parametrize("producer", sorted(VENUES))
async def test_sigterm_stops_the_producer_within_2s_while_its_venue_is_away(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]], venue: str,
    producer: str,
) -> None:  # fmt: skip
    args, venue_env = VENUES[producer]
    code = await stopped_while_the_venue_is_away(
        settings, log, processes, venue=venue, args=args, venue_env=venue_env,
        retrying="retry in",
    )  # fmt: skip
    assert code == 0
    text = await asyncio.to_thread(log.read_text)
    assert "Traceback" not in text
    if producer != "ibkr":  # ib_async logs a connect it sees cancelled at ERROR, by itself
        assert "ERROR" not in text
