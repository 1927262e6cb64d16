"""What the benchmarks share: a synthetic trade load, publishing it, counting stored rows and
starting `mdp process` / `mdp sink` as processes of their own.

The benchmarks are shipped tooling, not tests, so they keep their own copy of these few helpers
instead of importing the test suite (nothing outside ``tests/`` imports ``tests``).
"""

from __future__ import annotations

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
    settings: Settings, topic: str, messages: Sequence[tuple[bytes | None, bytes]]
) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
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
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "mdp", *args], env={**os.environ, **env},
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


def processor_process(
    settings: Settings, log: Path, web_port: int | None = None
) -> subprocess.Popen[bytes]:
    """`mdp process`, its output appended to ``log``; workers on one host need web ports of
    their own."""
    return _role(["process"], {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_PROCESS_GROUP": settings.process_group,
        "MDP_PROCESS_WEB_PORT": str(web_port or settings.process_web_port),
        "MDP_PROCESS_BATCH_MS": str(settings.process_batch_ms),
        "MDP_PROCESS_COMMIT_INTERVAL_S": str(settings.process_commit_interval_s),
        "MDP_LOG_LEVEL": "INFO",
    }, log)  # fmt: skip


def sink_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`mdp sink` with an ephemeral metrics port (which it logs), output appended to ``log``."""
    return _role(["sink"], {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MARKET_DATA_DATABASE_URL": settings.database,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_SINK_GROUP": settings.sink_group,
        "MDP_SINK_BATCH_ROWS": str(settings.sink_batch_rows),
        "MDP_SINK_BATCH_MS": str(settings.sink_batch_ms),
        "MDP_METRICS_PORT": "0",
    }, log)  # fmt: skip
