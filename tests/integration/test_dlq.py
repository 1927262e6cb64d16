"""`mdp dlq show` and `mdp dlq replay` against a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from marketdata.dlq import (
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_STAGE,
    HEADER_TOPIC,
)
from marketdata.kafka import create_producer, ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import read_topic


async def mdp(settings: Settings, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "dlq", *args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
             "MDP_TOPIC_PREFIX": settings.topic_prefix},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_dead_letters_are_listed_and_sent_back_where_they_came_from(
    settings: Settings,
) -> None:
    topics = settings.topics
    await ensure_topics(settings, topics.all())
    producer = create_producer(settings)
    await producer.start()
    try:
        headers = [("trace", b"abc"), (HEADER_REASON, b"unsupported schema version 9"),
                   (HEADER_STAGE, b"process"), (HEADER_TOPIC, topics.ticks_raw.encode()),
                   (HEADER_PARTITION, b"2"), (HEADER_OFFSET, b"41")]  # fmt: skip
        await producer.send_and_wait(topics.dlq, b'{"kind":"ticks","v":9}',
                                     key=b"BINANCE:BTCUSDT", headers=headers)  # fmt: skip
        await producer.send_and_wait(topics.dlq, b"99\x00garbage",
                                     headers=[(HEADER_REASON, b"price: not a number"),
                                              (HEADER_STAGE, b"ibkr.live")])  # fmt: skip
    finally:
        await producer.stop()

    shown = [line.split(maxsplit=3)[1:] for line in (await mdp(settings, "show")).splitlines()]
    assert sorted(shown[:2]) == [
        ["ibkr.live", "venue-payload", "price: not a number"],
        ["process", topics.ticks_raw, "unsupported schema version 9"],
    ]
    assert shown[2] == ["dead", "letters", f"in {topics.dlq}"]
    assert "1 dead letters" in await mdp(settings, "show", "--stage", "ibkr.live")
    assert "would send 1 dead letters back to their topics; 1 venue payloads left" in await mdp(
        settings, "replay", "--dry-run")  # fmt: skip
    assert await read_topic(settings, topics.ticks_raw, idle_s=1) == []

    assert "sent 1 dead letters back" in await mdp(settings, "replay")
    [back] = await read_topic(settings, topics.ticks_raw, until=1)
    assert (back.key, back.value) == (b"BINANCE:BTCUSDT", b'{"kind":"ticks","v":9}')
    assert list(back.headers) == [("trace", b"abc")]  # its own headers, not ours
