"""What the benchmarks share: a synthetic trade load, publishing it, counting stored rows and
starting `mdp process` / `mdp sink` as processes of their own, with the benchmark's settings
(``Settings.to_env()``, as `mdp run` gives its roles).

The benchmarks are shipped tooling, not tests, so these helpers live here rather than in the
test suite (nothing outside ``tests/`` imports ``tests``); the integration tests use the load,
publishing and counting helpers from here too, so there is one copy.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from marketdata.codec import encode_ticks
from marketdata.kafka import create_producer
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_ticks(count: int, symbols: int = 8) -> list[Tick]:
    """``count`` distinct trades; several share a timestamp, as on a busy market."""
    return [_tick(n, symbols) for n in range(count)]


def _tick(n: int, symbols: int) -> Tick:
    return Tick(
        exchange="BINANCE", symbol=f"SYM{n % symbols}",
        timestamp=T0 + timedelta(milliseconds=n // 3), source="binance.trade",
        trade_id=str(n), price=Decimal("100.25") + n, size=Decimal("0.001") * (n % 7 + 1),
        side="buy" if n % 2 else "sell", received_at=T0 + timedelta(milliseconds=n // 3 + 5),
        extras={"n": n} if n % 5 == 0 else None,
    )  # fmt: skip


def tick_messages(ticks: Sequence[Tick], per_message: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs, each value a batch of one instrument's ticks."""
    by_symbol: dict[str, list[Tick]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick.symbol, []).append(tick)
    return [
        (instrument_key("BINANCE", symbol), encode_ticks(group[start : start + per_message]))
        for symbol, group in by_symbol.items()
        for start in range(0, len(group), per_message)
    ]


async def publish(
    settings: Settings, topic: str, messages: Sequence[tuple[bytes | None, bytes]],
    *, pace_s: float = 0.0,
) -> None:  # fmt: skip
    producer = create_producer(settings)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
            if pace_s:
                await asyncio.sleep(pace_s)
        await producer.flush()
    finally:
        await producer.stop()


def count_rows(settings: Settings, table: str = "market_data_ticks") -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
        ).fetchone()
    return int(row[0]) if row else 0


def _role(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``mdp ARGS`` with ``env`` over this environment, its output appended to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "mdp", *args], env={**os.environ, **env},
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


def processor_process(
    settings: Settings, log: Path, web_port: int | None = None
) -> subprocess.Popen[bytes]:
    """`mdp process` with the benchmark's settings (the bench reads its INFO lines), its output
    appended to ``log``; workers on one host need web ports of their own."""
    env = {**settings.to_env(), "MDP_LOG_LEVEL": "INFO"}
    if web_port is not None:
        env["MDP_PROCESS_WEB_PORT"] = str(web_port)
    return _role(["process"], env, log)


def sink_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`mdp sink` with an ephemeral metrics port (which it logs), output appended to ``log``."""
    return _role(["sink"], {**settings.to_env(), "MDP_METRICS_PORT": "0"}, log)
