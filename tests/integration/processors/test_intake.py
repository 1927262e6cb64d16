"""The adaptive intake (processors.intake) in a real `mdp process` worker against the broker."""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.request
from pathlib import Path

from marketdata.records import Tick
from marketdata.settings import Settings
from tests.integration.processors.support import processor_process, read_ticks, read_topic
from tests.integration.sinks.support import make_ticks, publish, tick_messages


async def _metrics(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.process_web_port}/metrics"
    body: bytes = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    return body.decode()


def _value(metrics: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def _ticks_when(settings: Settings, count: int, within: float = 90.0) -> list[Tick]:
    """The output's ticks once there are ``count`` (a worker may take a while to start)."""
    deadline = asyncio.get_running_loop().time() + within
    ticks = await read_ticks(settings, settings.topics.ticks, idle_s=1)
    while len(ticks) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1)
        ticks = await read_ticks(settings, settings.topics.ticks, idle_s=1)
    return ticks


async def test_a_lone_message_goes_out_without_waiting_for_the_time_cap(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    # The time cap at 60 s: faust's take_events waited for it (or for the full buffer) before
    # handing a lone message to the agent, and again for the next message.
    s = processor_settings.model_copy(update={"process_batch_ms": 60_000})
    ticks = make_ticks(3)
    messages = tick_messages(ticks, per_message=1)
    processes.append(processor_process(s, log))
    await publish(s, s.topics.ticks_raw, messages[:1])
    # The first waits for the worker to start and join its group.
    assert len(await read_topic(s, s.topics.ticks, until=1, within=50)) == 1
    for sent in (2, 3):
        await publish(s, s.topics.ticks_raw, messages[sent - 1 : sent])
        out = await read_topic(s, s.topics.ticks, until=sent, within=20)
        assert len(out) == sent, f"message {sent} not forwarded within a third of the cap"
    emitted = await read_ticks(s, s.topics.ticks, idle_s=1)
    assert sorted(emitted, key=lambda t: int(t.trade_id)) == ticks
    metrics = await _metrics(s)
    assert _value(metrics, "mdp_process_buffer_messages_count") == 3


async def test_a_backlog_is_taken_in_buffers_of_many_messages(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    # The whole backlog is in the broker before the worker starts: the intake never runs dry
    # until it is through, so buffers hold many messages each, none more than the take size.
    s = processor_settings.model_copy(update={"process_take_messages": 200})
    ticks = make_ticks(3000)
    await publish(s, s.topics.ticks_raw, tick_messages(ticks, per_message=1))
    processes.append(processor_process(s, log))
    emitted = await _ticks_when(s, len(ticks))
    assert sorted(emitted, key=lambda t: int(t.trade_id)) == ticks
    metrics = await _metrics(s)
    buffers = _value(metrics, "mdp_process_buffer_messages_count")
    assert _value(metrics, "mdp_process_buffer_messages_sum") == len(ticks)
    assert buffers <= len(ticks) / 5, f"{buffers:.0f} buffers for {len(ticks)} messages"
    assert _value(metrics, 'mdp_process_buffer_messages_bucket{le="200.0"}') == buffers
    print(f"{buffers:.0f} buffers for {len(ticks)} messages")
