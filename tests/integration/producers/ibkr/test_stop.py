"""`mdp produce ibkr` stops promptly on SIGTERM, with code 0, also while its venue is away: its
connection attempts and backoff waits honour the stop."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.polling import wait_until
from tests.integration.roles import role_process


@pytest.fixture
async def silent() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A server that accepts connections and never says a word (a hung TWS)."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], accepted
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


async def _stops_within_5_s(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.wait, 5)


@pytest.mark.parametrize("venue", ["refusing", "silent"])
async def test_sigterm_stops_the_producer_while_tws_is_away(
    settings: Settings, silent: tuple[int, list[asyncio.StreamWriter]], log: Path,
    processes: list[subprocess.Popen[bytes]], venue: str,
) -> None:  # fmt: skip
    await ensure_topics(settings, settings.topics.all())
    port = silent[0] if venue == "silent" else _closed_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "IBKR_PORT": str(port)}  # fmt: skip
    process = role_process(["produce", "ibkr", "--symbols", "STK:AAPL:SMART:USD"], env, log)
    processes.append(process)
    if venue == "silent":  # stopped while waiting for the handshake
        await wait_until(lambda: bool(silent[1]), within=30)
    else:  # stopped in a backoff wait between attempts
        await wait_until(
            lambda: log.exists() and log.read_text().count("reconnecting in") >= 3, within=30
        )
    assert await _stops_within_5_s(process) == 0
    assert "Traceback" not in await asyncio.to_thread(log.read_text)
