"""Helpers for the processor tests: run `mdp process`, read what it emitted."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from bench.support import free_port
from marketdata.codec import BarBatch, TickBatch, decode
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from tests.integration.roles import role_process

__all__ = ["free_port"]  # re-exported: the load helpers' one copy is bench/support.py


def processor_process(
    settings: Settings, log: Path, web_port: int | None = None
) -> subprocess.Popen[bytes]:
    """`mdp process` as its own process; its output appended to ``log``. Workers on one host
    need web ports of their own."""
    env = settings.to_env()
    if web_port is not None:
        env["MDP_PROCESS_WEB_PORT"] = str(web_port)
    return role_process(["process"], env, log)


async def read_topic(
    settings: Settings, topic: str, *, until: int | None = None, idle_s: float = 3.0,
    within: float = 90.0,
) -> list[ConsumerRecord[bytes, bytes]]:  # fmt: skip
    """Everything in ``topic`` from the start: until ``until`` messages, or ``idle_s`` seconds
    without a new one, whichever first (bounded by ``within``)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    received: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = loop.time()
    try:
        while loop.time() < deadline and (until is None or len(received) < until):
            fetched = await consumer.getmany(timeout_ms=300)
            for batch in fetched.values():
                received.extend(batch)
            if fetched:
                last = loop.time()
            elif until is None and loop.time() - last > idle_s:
                break
    finally:
        await consumer.stop()
    return received


async def read_ticks(
    settings: Settings, topic: str, *, key: bytes | None = None, idle_s: float = 2.0
) -> list[Tick]:
    """The ticks of every message in ``topic``; with ``key``, each message must carry it."""
    return [r for r in await _read_records(settings, topic, TickBatch, key, idle_s)
            if isinstance(r, Tick)]  # fmt: skip


async def read_bars(
    settings: Settings, topic: str, *, key: bytes | None = None, idle_s: float = 2.0
) -> list[Bar]:
    """The bars of every message in ``topic``; with ``key``, each message must carry it."""
    return [r for r in await _read_records(settings, topic, BarBatch, key, idle_s)
            if isinstance(r, Bar)]  # fmt: skip


async def _read_records(
    settings: Settings, topic: str, kind: type[TickBatch | BarBatch], key: bytes | None,
    idle_s: float,
) -> list[Tick | Bar]:  # fmt: skip
    records: list[Tick | Bar] = []
    for message in await read_topic(settings, topic, idle_s=idle_s):
        batch = decode(message.value)
        assert isinstance(batch, kind)
        if key is not None:
            assert message.key == key
        records.extend(batch.records)
    return records
