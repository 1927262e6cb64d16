"""Helpers for the sink tests: publish records, run a sink, wait for rows."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

# The synthetic load and its publishing are the benchmarks' too: one copy, in bench/support.py.
from bench.support import T0, count_rows, make_ticks, publish, tick_messages
from marketdata.codec import encode_bars
from marketdata.records import Bar
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from sinks.service import Sink
from sinks.writer import BatchWriter, Tables
from tests.integration.roles import role_process

# Re-exported for the sink, processor and end-to-end tests.
__all__ = ["T0", "count_rows", "make_ticks", "publish", "tick_messages"]


def make_bar(minute: int, *, closed: bool = True, close: str = "101", symbol: str = "SYM0") -> Bar:
    return Bar(
        exchange="BINANCE", symbol=symbol, interval="1m", timestamp=T0 + timedelta(minutes=minute),
        open=Decimal("100"), high=Decimal("102"), low=Decimal("99"), close=Decimal(close),
        volume=Decimal("12.5"), trade_count=40, closed=closed, source="binance.kline",
    )  # fmt: skip


def bar_messages(bars: Sequence[Bar]) -> list[tuple[bytes, bytes]]:
    return [(instrument_key(b.exchange, b.symbol), encode_bars([b])) for b in bars]


async def wait_for_rows(
    settings: Settings, expected: int, table: str = "market_data_ticks", within: float = 60.0
) -> int:
    """Poll until the table holds ``expected`` rows (or more), or the time is up."""
    deadline = asyncio.get_running_loop().time() + within
    rows = await asyncio.to_thread(count_rows, settings, table)
    while rows < expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(count_rows, settings, table)
    return rows


def metric(sink: Sink, name: str, **labels: str) -> float:
    return sink.metrics.registry.get_sample_value(name, labels or None) or 0.0


@contextlib.asynccontextmanager
async def running_sink(settings: Settings, tables: Tables | None = None) -> AsyncIterator[Sink]:
    """A sink in this process (writing to ``tables`` when given), stopped (with its drain) on
    exit."""
    stop = asyncio.Event()
    sink = Sink(settings)
    if tables is not None:
        sink.writer = BatchWriter(tables)
    await sink.start()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await sink.aclose()


def sink_process(settings: Settings, log: Path, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """`mdp sink` as its own process; its output appended to ``log``."""
    env = {**settings.to_env(), "MDP_METRICS_PORT": str(metrics_port)}
    return role_process(["sink"], env, log)


async def committed_total(settings: Settings, group: str, topic: str) -> int:
    """The sum of the group's committed offsets over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        total = 0
        for partition in range(settings.topic_partitions):
            with contextlib.suppress(KafkaError):
                total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def read_dead_letters(settings: Settings, group: str, count: int) -> list[ConsumerRecord]:
    """The first ``count`` messages of the dead-letter topic (fails after 30 s without them)."""
    consumer = AIOKafkaConsumer(
        settings.topics.dlq, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        letters: list[ConsumerRecord] = []
        async with asyncio.timeout(30):
            while len(letters) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    letters.extend(batch)
        return letters
    finally:
        await consumer.stop()


def strict_tables(database: str, name: str, *statements: str) -> Tables:
    """Tables ``{name}_ticks`` and ``{name}_bars`` like the market-data ones (key included),
    then ``statements`` with ``{ticks}`` and ``{bars}`` standing for them: stricter than the
    records, so that a valid record can still be refused by the database."""
    tables = Tables(ticks=f"{name}_ticks", bars=f"{name}_bars")
    names = {
        "ticks": psycopg.sql.Identifier(tables.ticks),
        "bars": psycopg.sql.Identifier(tables.bars),
    }
    with psycopg.connect(database, autocommit=True) as conn:
        for table, like in (
            (tables.ticks, "market_data_ticks"),
            (tables.bars, "market_data_ohlcv"),
        ):
            conn.execute(
                psycopg.sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    psycopg.sql.Identifier(table), psycopg.sql.Identifier(like)
                )
            )
        for statement in statements:
            conn.execute(psycopg.sql.SQL(statement).format(**names))
    return tables
