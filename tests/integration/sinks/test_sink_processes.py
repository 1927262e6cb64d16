"""`mdp sink` as separate processes: crashes, restarts, several in one group, clean shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from marketdata.settings import Settings
from tests.integration.outages import Outage, database_outage
from tests.integration.sinks.support import (
    committed_total,
    count_rows,
    make_ticks,
    publish,
    sink_process,
    tick_messages,
    wait_for_rows,
)
from tests.services import Found

N = 20_000


@pytest.fixture
def small_batches(sink_settings: Settings) -> Settings:
    # Small, frequent batches, so that a kill lands between commits.
    return sink_settings.model_copy(update={"sink_batch_rows": 500, "sink_batch_ms": 50})


def _distinct_trades(settings: Settings) -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute("SELECT count(DISTINCT trade_id) FROM market_data_ticks").fetchone()
    return int(row[0]) if row else 0


async def test_kill_9_mid_stream_then_restart_stores_exactly_n(
    small_batches: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    messages = tick_messages(make_ticks(N), per_message=10)
    processes.append(sink_process(small_batches, log))
    stream = asyncio.create_task(
        publish(small_batches, small_batches.topics.ticks, messages, pace_s=0.002)
    )
    assert await wait_for_rows(small_batches, N // 4) >= N // 4
    processes[0].kill()  # SIGKILL: no drain, no commit of what is in hand
    processes[0].wait(timeout=10)
    stored_at_crash = count_rows(small_batches)
    assert stored_at_crash < N
    processes.append(sink_process(small_batches, log))
    await stream
    assert await wait_for_rows(small_batches, N) == N
    await asyncio.sleep(1)
    assert count_rows(small_batches) == N
    assert _distinct_trades(small_batches) == N


async def test_two_sinks_share_the_stream_and_survive_one_killed(
    small_batches: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    messages = tick_messages(make_ticks(N), per_message=10)
    processes.extend([sink_process(small_batches, log), sink_process(small_batches, log)])
    stream = asyncio.create_task(
        publish(small_batches, small_batches.topics.ticks, messages, pace_s=0.002)
    )
    assert await wait_for_rows(small_batches, N // 3) >= N // 3
    processes[0].kill()
    await stream
    # The survivor takes the dead member's partitions after its session times out.
    assert await wait_for_rows(small_batches, N, within=90) == N
    assert count_rows(small_batches) == N
    assert _distinct_trades(small_batches) == N
    assert processes[1].poll() is None


async def test_sigterm_stores_commits_and_exits_zero(
    sink_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    messages = tick_messages(make_ticks(4000), per_message=20)
    processes.append(sink_process(sink_settings, log))
    await publish(sink_settings, sink_settings.topics.ticks, messages)
    assert await wait_for_rows(sink_settings, 4000) == 4000
    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(timeout=30) == 0
    topic = sink_settings.topics.ticks
    assert await committed_total(sink_settings, sink_settings.sink_group, topic) == len(messages)


async def test_postgresql_stopped_mid_stream_then_restarted_stores_exactly_n(
    small_batches: Settings,
    processes: list[subprocess.Popen[bytes]],
    log: Path,
    services: Found,
) -> None:
    async with database_outage(small_batches, services) as outage:
        await _across_an_outage(small_batches, outage, processes, log)


async def _across_an_outage(
    small_batches: Settings, outage: Outage, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    messages = tick_messages(make_ticks(N), per_message=10)
    processes.append(sink_process(outage.settings, log))
    stream = asyncio.create_task(
        publish(small_batches, small_batches.topics.ticks, messages, pace_s=0.002)
    )
    assert await wait_for_rows(small_batches, N // 4) >= N // 4
    await outage.start()
    try:
        await asyncio.sleep(4)
        assert processes[0].poll() is None  # the sink waits for its database, it does not die
    finally:
        await outage.stop()
    await stream
    assert await wait_for_rows(small_batches, N, within=90) == N
    assert _distinct_trades(small_batches) == N
    assert processes[0].poll() is None
    output = await asyncio.to_thread(log.read_text)
    assert "consumption paused" in output  # it did meet the outage
    assert "consumption resumed" in output
