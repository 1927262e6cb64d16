"""Helpers for the processor tests: run `mdp process`, read what it emitted."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from marketdata.settings import Settings
from tests.integration.roles import role_process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def processor_process(
    settings: Settings, log: Path, web_port: int | None = None
) -> subprocess.Popen[bytes]:
    """`mdp process` as its own process; its output appended to ``log``. Workers on one host
    need web ports of their own."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
        "MDP_TOPIC_PREFIX": settings.topic_prefix,
        "MDP_PROCESS_GROUP": settings.process_group,
        "MDP_PROCESS_WEB_PORT": str(web_port or settings.process_web_port),
        "MDP_PROCESS_BATCH_MS": str(settings.process_batch_ms),
        "MDP_PROCESS_COMMIT_INTERVAL_S": str(settings.process_commit_interval_s),
        "MDP_LOG_LEVEL": "INFO",
    }
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
