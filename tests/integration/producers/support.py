"""What the producers' integration tests share."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.polling import wait_until
from tests.integration.roles import role_process

_DELETE = "DELETE FROM market_data_ohlcv WHERE exchange = %s AND symbol = %s"
_INSERT = (
    "INSERT INTO market_data_ohlcv (exchange, symbol, interval, timestamp, open, high, low,"
    " close, volume, closed, source) VALUES (%s, %s, %s, %s, 1, 1, 1, 1, 1, true, %s)"
)
# Bars derived from trades are another series: a resume ignores them.
_DERIVED_AROUND = (timedelta(minutes=-10), timedelta(minutes=10))


@asynccontextmanager
async def stored_bar(
    settings: Settings, exchange: str, symbol: str, interval: str, at: datetime, *, source: str
) -> AsyncIterator[None]:
    """One bar of a series (``source``) in the database, as an earlier run would have left it,
    for a resume to find, and derived bars of the same interval 10 minutes either side, for it
    to ignore; the series is cleared before and after."""

    def execute(query: str, params: tuple[object, ...]) -> None:
        with psycopg.connect(settings.database, autocommit=True) as conn:
            conn.execute(query, params)

    await asyncio.to_thread(migrate.upgrade, settings)
    await asyncio.to_thread(execute, _DELETE, (exchange, symbol))
    await asyncio.to_thread(execute, _INSERT, (exchange, symbol, interval, at, source))
    for offset in _DERIVED_AROUND:
        row = (exchange, symbol, interval, at + offset, "derived.trades")
        await asyncio.to_thread(execute, _INSERT, row)
    try:
        yield
    finally:
        await asyncio.to_thread(execute, _DELETE, (exchange, symbol))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A server that accepts connections and never says a word (a hung venue): its port and
    the connections it accepted."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def stopped_while_the_venue_is_away(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]], *, venue: str,
    args: list[str], venue_env: Callable[[int], dict[str, str]], retrying: str,
) -> int:  # fmt: skip
    """``mdp ARGS`` with its venue at the port given to ``venue_env``: one that refuses
    (``venue="refusing"``; SIGTERM in a backoff wait, once ``retrying`` is logged three times) or
    a silent one (``"silent"``; SIGTERM while it waits for the venue's first word). The exit code,
    within 2 s of SIGTERM (the issue's bound for a producer)."""
    async with silent_server() as (silent_port, accepted):
        await ensure_topics(settings, settings.topics.all())
        port = silent_port if venue == "silent" else closed_port()
        env = {**settings.to_env(), **venue_env(port)}
        process = role_process(args, env, log)
        processes.append(process)
        if venue == "silent":  # stopped while waiting for the logon or handshake
            await wait_until(lambda: bool(accepted), within=30)
        else:  # stopped in a backoff wait between attempts
            await wait_until(
                lambda: log.exists() and log.read_text().count(retrying) >= 3, within=30
            )
        process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(process.wait, 2)
