"""End to end: venue fake → producer → Kafka → `mdp process` → `mdp sink` → PostgreSQL, every
role its own process, as production runs them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import free_port, processor_process
from tests.integration.roles import role_process
from tests.integration.sinks.support import sink_process

_TICKS = (
    "SELECT trade_id, timestamp, price, size, side, source FROM market_data_ticks"
    " WHERE exchange = %s AND symbol = %s AND timestamp >= %s AND timestamp < %s"
    " ORDER BY timestamp, trade_id"
)
_BARS = (
    "SELECT timestamp, open, high, low, close, volume, trade_count, closed FROM market_data_ohlcv"
    " WHERE exchange = %s AND symbol = %s AND interval = %s AND timestamp >= %s AND timestamp < %s"
    " AND source NOT LIKE 'derived.%%'"  # a venue's own bars: those from its trades are apart
    " ORDER BY timestamp"
)


@dataclass
class Pipeline:
    """The processor and the sink of one test, and the producers it starts."""

    settings: Settings
    log: Path
    processes: list[subprocess.Popen[bytes]]
    roles: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return self.settings.to_env()

    def start(self, name: str, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        """Start (or restart) a role: ``process`` and ``sink`` as configured, others by args."""
        if name == "process":
            process = processor_process(self.settings, self.log, web_port=free_port())
        elif name == "sink":
            process = sink_process(self.settings, self.log)
        else:
            process = role_process(list(args), {**self.env, **(env or {})}, self.log)
        self.roles[name] = process
        self.processes.append(process)

    async def kill(self, name: str) -> None:
        """kill -9: no shutdown, no final commit."""
        process = self.roles[name]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)

    async def stop(self, name: str) -> int:
        process = self.roles[name]
        process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(process.wait, 30)

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.database) as conn:
            return conn.execute(sql, params).fetchall()

    async def ticks(
        self, exchange: str, symbol: str, start: datetime, end: datetime, *, at_least: int,
        within: float = 90.0,
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        """The ticks of the series in ``[start, end)`` once there are ``at_least`` of them."""
        return await self.until(_TICKS, (exchange, symbol, start, end), at_least, within)

    async def bars(
        self, exchange: str, symbol: str, interval: str, start: datetime, end: datetime, *,
        at_least: int, within: float = 90.0,
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        """The bars of the series opening in ``[start, end)`` once there are ``at_least``."""
        params = (exchange, symbol, interval, start, end)
        return await self.until(_BARS, params, at_least, within)

    async def until(
        self, sql: str, params: Sequence[Any], at_least: int, within: float
    ) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` once there are ``at_least`` of them (waiting up to ``within``)."""
        deadline = asyncio.get_running_loop().time() + within
        rows = await asyncio.to_thread(self.query, sql, params)
        while len(rows) < at_least:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(rows)} rows after {within:.0f} s, not {at_least}")
            await asyncio.sleep(0.25)
            rows = await asyncio.to_thread(self.query, sql, params)
        return rows


P = TypeVar("P", bound=Pipeline)


@asynccontextmanager
async def own_pipeline(
    kind: type[P], settings: Settings, unique: str, log: Path,
    processes: list[subprocess.Popen[bytes]], **updates: Any,
) -> AsyncIterator[P]:  # fmt: skip
    """A processor and a sink of the test's own (topics and consumer groups), running, with
    ``updates`` to their settings; stopped after."""
    own = settings.model_copy(update={"process_group": f"{unique}-process",
                                      "sink_group": f"{unique}-sink",
                                      "process_batch_ms": 50, **updates})  # fmt: skip
    await ensure_topics(own, own.topics.all())
    await asyncio.to_thread(migrate.upgrade, own)
    running = kind(own, log, processes)
    running.start("sink")
    running.start("process")
    yield running
    for name in running.roles:
        if running.roles[name].poll() is None:
            await running.stop(name)


@pytest.fixture
async def pipeline(
    settings: Settings, unique: str, log: Path, processes: list[subprocess.Popen[bytes]]
) -> AsyncIterator[Pipeline]:
    """A processor and a sink of this test's own (topics and consumer groups), running."""
    async with own_pipeline(Pipeline, settings, unique, log, processes) as running:
        yield running
