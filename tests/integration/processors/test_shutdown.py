"""`mdp process` is gone within 5 s of SIGTERM, with code 0 and its web port released, also when
the broker is unreachable at that moment (faust's own shutdown waits on the broker for minutes)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

from marketdata.settings import Settings
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.processors.support import processor_process, read_topic
from tests.integration.sinks.support import make_ticks, publish, tick_messages
from tests.integration.stopping import listening, stop_in_time


async def test_a_processor_whose_broker_is_gone_stops_within_the_limit(
    processor_settings: Settings, broker: KafkaProxy, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    s = processor_settings
    worker = processor_process(
        s.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap}), log
    )
    processes.append(worker)
    await publish(s, s.topics.ticks_raw, tick_messages(make_ticks(5), per_message=1))
    assert len(await read_topic(s, s.topics.ticks, until=1, within=60)) >= 1
    assert listening(s.process_web_port)
    # Settled in its group (a commit, heartbeats) before the outage: only then did faust's
    # stop hang, its consumer thread dying in a cancelled retry while leaving the group.
    await asyncio.sleep(6)
    await broker.cut()
    await asyncio.sleep(3)  # fetches and heartbeats fail meanwhile
    text = await stop_in_time(worker, s.process_web_port, log, "processor")
    assert re.findall(r"(\d+) raw messages in hand were not committed", text) == ["0"]


async def test_a_processor_with_its_broker_stops_in_time_and_commits(
    processor_settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    s = processor_settings
    await publish(s, s.topics.ticks_raw, tick_messages(make_ticks(50), per_message=10))
    worker = processor_process(s, log)
    processes.append(worker)
    assert len(await read_topic(s, s.topics.ticks, until=1, within=60)) >= 1
    text = await stop_in_time(worker, s.process_web_port, log, "processor")
    assert "did not stop within" not in text  # faust's own stop finished, last commit included
