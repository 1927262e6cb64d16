"""`mdp produce dtc` stops promptly on SIGTERM, with code 0, also while its venue is away: its
connection attempts and backoff waits honour the stop."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from marketdata.settings import Settings
from tests.integration.producers.support import closed_port, stopped_while_the_venue_is_away


@pytest.mark.parametrize("venue", ["refusing", "silent"])
async def test_sigterm_stops_the_producer_while_the_dtc_server_is_away(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]], venue: str
) -> None:
    code = await stopped_while_the_venue_is_away(
        settings, log, processes, venue=venue,
        args=["produce", "dtc", "--symbols", "ESZ4@CME"],
        venue_env=lambda port: {"DTC_PORT": str(port), "DTC_HISTORICAL_PORT": str(closed_port())},
        retrying="retry in",
    )  # fmt: skip
    assert code == 0
    assert "Traceback" not in await asyncio.to_thread(log.read_text)
