"""`mdp rollup --every` (the rollup role of `mdp run` and compose) on TimescaleDB: the continuous
aggregates' policies keep the rollups, so the job says so once, idles (healthy) instead of
exiting, which a supervisor would restart, and is gone in time after SIGTERM."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from pathlib import Path

from bench.support import free_port
from marketdata.settings import Settings
from mdp.board import parse_metrics
from tests.integration.polling import wait_until
from tests.integration.roles import role_process
from tests.integration.stopping import stop_in_time

IDLE = "TimescaleDB: the rollups are continuous aggregates, kept by policy; idle until stopped"


def _get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return int(answer.status), answer.read().decode()


async def test_the_job_idles_on_timescaledb_saying_so_and_stops_in_time(
    migrated: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    env = {**migrated.to_env(), "MDP_LOG_LEVEL": "INFO"}
    processes.append(job := role_process(["rollup", "--every", "1", "--metrics-port", str(port)],
                                         env, log))  # fmt: skip
    await wait_until(lambda: IDLE in log.read_text(), within=60, step=0.2)
    await asyncio.sleep(2.5)  # two periods: no further run, no exit, no restart needed
    assert job.poll() is None
    _, text = await asyncio.to_thread(_get, port, "/metrics")
    figures = parse_metrics(text)
    assert (figures["mdp_rollup_idle"], figures["mdp_rollup_runs_total"]) == (1, 0)
    assert figures["mdp_rollup_failing"] == 0
    assert (await asyncio.to_thread(_get, port, "/health"))[0] == 200
    said = await stop_in_time(job, port, log, "rollup")
    assert said.count(IDLE) == 1
    assert "rollup round failed" not in said
