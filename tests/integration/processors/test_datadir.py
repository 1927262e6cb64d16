"""`mdp process` keeps faust's files under MDP_STATE_DIR: a run leaves nothing in the directory
it was started from (it used to leave a ``<group>-data/`` folder in the checkout)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from marketdata.settings import Settings
from tests.integration.processors.support import read_topic
from tests.integration.roles import role_process
from tests.integration.sinks.support import make_ticks, publish, tick_messages
from tests.integration.stopping import stop_in_time


async def test_a_processor_leaves_nothing_in_its_working_directory(
    processor_settings: Settings, tmp_path: Path, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    s = processor_settings.model_copy(update={"state_dir": tmp_path / "state"})
    await publish(s, s.topics.ticks_raw, tick_messages(make_ticks(5), per_message=5))
    worker = role_process(["process"], s.to_env(), log, cwd=cwd)
    processes.append(worker)
    assert len(await read_topic(s, s.topics.ticks, until=1, within=60)) >= 1
    await stop_in_time(worker, s.process_web_port, log, "processor")
    assert sorted(cwd.iterdir()) == []
    assert (tmp_path / "state" / "faust" / s.process_group).is_dir()
