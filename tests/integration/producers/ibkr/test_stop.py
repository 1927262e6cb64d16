"""`mdp produce ibkr` stops promptly on SIGTERM, with code 0, also while its venue is away: its
connection attempts and backoff waits honour the stop."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from marketdata.settings import Settings
from tests.integration.producers.support import stopped_while_the_venue_is_away


@pytest.mark.parametrize("venue", ["refusing", "silent"])
async def test_sigterm_stops_the_producer_while_tws_is_away(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]], venue: str
) -> None:
    code = await stopped_while_the_venue_is_away(
        settings, log, processes, venue=venue,
        args=["produce", "ibkr", "--symbols", "STK:AAPL:SMART:USD"],
        venue_env=lambda port: {"IBKR_PORT": str(port)},
        retrying="retry in",
    )  # fmt: skip
    assert code == 0
    assert "Traceback" not in await asyncio.to_thread(log.read_text)
