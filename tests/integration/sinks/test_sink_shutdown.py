"""`mdp sink` stops within 5 s of SIGTERM, with code 0 and its port released, also when its
database hangs or is gone at that moment: one bounded attempt to store what it holds, then one
line saying how many rows stay uncommitted in Kafka."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marketdata.settings import Settings
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.processors.support import free_port
from tests.integration.sinks.freezable_proxy import FreezableProxy
from tests.integration.sinks.support import (
    committed_total,
    count_rows,
    make_ticks,
    publish,
    sink_process,
    tick_messages,
    wait_for_rows,
)
from tests.integration.stopping import released, stop_in_time


@pytest.fixture
async def proxy(sink_settings: Settings) -> AsyncIterator[FreezableProxy]:
    host, port = sink_settings.database.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = FreezableProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.thaw()
        await proxy.aclose()


@pytest.mark.parametrize("outage", ["frozen", "refused"])
async def test_sigterm_while_the_database_is_unreachable_exits_zero_within_5_s(
    sink_settings: Settings,
    proxy: FreezableProxy,
    processes: list[subprocess.Popen[bytes]],
    log: Path,
    outage: str,
) -> None:
    database = sink_settings.database.replace(
        sink_settings.database.rsplit("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{proxy.port}"
    )
    through_proxy = sink_settings.model_copy(update={"database_url": database})
    ticks = make_ticks(1000)
    first, then = tick_messages(ticks[:400], 10), tick_messages(ticks[400:], 10)
    port = free_port()
    processes.append(sink_process(through_proxy, log, metrics_port=port))
    await publish(sink_settings, sink_settings.topics.ticks, first)
    assert await wait_for_rows(sink_settings, 400) == 400
    await asyncio.sleep(0.5)  # the offsets of the stored rows committed
    if outage == "frozen":
        proxy.freeze()
    else:
        await proxy.cut()
    await publish(sink_settings, sink_settings.topics.ticks, then)
    await asyncio.sleep(1.5)  # the sink took them and is stuck writing them (or retrying)

    started = time.monotonic()
    processes[0].send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(processes[0].wait, 15)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 5.0
    assert released(port)
    output = await asyncio.to_thread(log.read_text)
    unstored = re.findall(r"shutting down with (\d+) rows unstored", output)
    # The rows the sink held: all 600, or fewer when the outage paused consumption before it
    # had fetched them all (its batches start as soon as its input runs dry). None is stored
    # and none committed, which the counts below check.
    assert len(unstored) == 1
    assert 0 < int(unstored[0]) <= len(ticks) - 400
    assert count_rows(sink_settings) == 400
    topic = sink_settings.topics.ticks
    assert await committed_total(sink_settings, sink_settings.sink_group, topic) == len(first)


async def test_sigterm_while_the_broker_hangs_at_start_exits_zero_within_5_s(
    sink_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    host, port = sink_settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    broker = FreezableProxy(host, int(port))
    await broker.start()
    broker.freeze()  # connections accepted, never answered
    try:
        hanging = sink_settings.model_copy(
            update={"kafka_bootstrap_servers": f"127.0.0.1:{broker.port}"}
        )
        metrics_port = free_port()
        processes.append(sink_process(hanging, log, metrics_port=metrics_port))
        await asyncio.sleep(3)  # started, and waiting for the broker's first answer
        assert processes[0].poll() is None
        started = time.monotonic()
        processes[0].send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(processes[0].wait, 15)
        elapsed = time.monotonic() - started
    finally:
        broker.thaw()
        await broker.aclose()
    assert code == 0
    assert elapsed < 5.0
    assert released(metrics_port)
    assert "sink stopped" in await asyncio.to_thread(log.read_text)


async def test_sigterm_after_the_broker_went_away_mid_run_exits_zero_within_5_s(
    sink_settings: Settings, broker: KafkaProxy, processes: list[subprocess.Popen[bytes]],
    log: Path,
) -> None:  # fmt: skip
    through_proxy = sink_settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
    metrics_port = free_port()
    processes.append(sink_process(through_proxy, log, metrics_port=metrics_port))
    await publish(sink_settings, sink_settings.topics.ticks, tick_messages(make_ticks(400), 10))
    assert await wait_for_rows(sink_settings, 400) == 400
    await asyncio.sleep(0.5)  # the offsets of the stored rows committed
    await broker.cut()
    await asyncio.sleep(1.5)  # polling, committing and measuring lag against no broker

    output = await stop_in_time(processes[0], metrics_port, log, "sink")
    assert "sink stopped" in output
    assert count_rows(sink_settings) == 400
