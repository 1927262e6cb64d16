"""The supervisor with real child processes (small Python programs), no mocks."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from marketdata.errors import ServiceError
from marketdata.settings import Settings
from mdp.supervisor import RoleSpec, Supervisor
from tests.integration.polling import wait_until

FOREVER = ("-c", "import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
           "print('up', flush=True)\n"
           "time.sleep(60)")  # fmt: skip


async def test_children_start_run_and_stop_in_order(tmp_path: Path) -> None:
    stopped: list[str] = []
    specs = [RoleSpec("late", FOREVER, stop_order=2), RoleSpec("early", FOREVER, stop_order=1)]
    supervisor = Supervisor(specs, tmp_path)
    await supervisor.start()
    assert [c.state for c in supervisor.children] == ["running", "running"]

    async def note_exit(name: str, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        stopped.append(name)

    watchers = [asyncio.create_task(note_exit(c.spec.name, c.process))
                for c in supervisor.children if c.process is not None]  # fmt: skip
    await asyncio.sleep(0.5)
    await supervisor.aclose()
    await asyncio.gather(*watchers)
    assert stopped == ["early", "late"]
    assert [(c.state, c.exit_code) for c in supervisor.children] == [("stopped", 0)] * 2
    assert "up" in (tmp_path / "late.log").read_text()


async def test_a_crashed_child_is_restarted_and_a_usage_error_is_not(tmp_path: Path) -> None:
    crash = RoleSpec("crash", ("-c", "import sys; sys.exit(1)"))
    usage = RoleSpec("usage", ("-c", "import sys; sys.exit(2)"))
    supervisor = Supervisor([crash, usage], tmp_path)
    await supervisor.start()
    stop = asyncio.Event()
    watching = asyncio.create_task(supervisor.watch(stop))
    crashing, misused = supervisor.children
    await wait_until(lambda: crashing.restarts >= 2 and misused.state == "failed", within=20)
    stop.set()
    await watching
    assert (misused.restarts, misused.exit_code) == (0, 2)
    assert crashing.exit_code == 1
    await supervisor.aclose()
    assert (tmp_path / "crash.log").read_text().count("starting") >= 3


async def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = RoleSpec("stubborn", ("-c", "import signal, time\n"
                                     "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                     "print('up', flush=True)\n"
                                     "time.sleep(60)"))  # fmt: skip
    supervisor = Supervisor([stubborn], tmp_path)
    await supervisor.start()
    await wait_until(lambda: "up" in (tmp_path / "stubborn.log").read_text(), within=10)
    await supervisor.aclose(timeout_s=0.5)
    [child] = supervisor.children
    assert (child.state, child.exit_code) == ("stopped", -9)


async def test_a_venue_that_dies_before_listening_fails_the_start_at_once(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = RoleSpec("fake-dead", ("-c", "import sys; sys.exit(3)"), ready_port=port)
    supervisor = Supervisor([dead], tmp_path)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ServiceError, match=rf"fake-dead: nothing listens on 127.0.0.1:{port}"):
        await supervisor.start()
    assert asyncio.get_running_loop().time() - started < 10  # not the whole 15 s
    await supervisor.aclose()


async def test_children_read_the_settings_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every child gets ``Settings.to_env()`` over the inherited environment (so a stale
    inherited value loses), under its spec's own variables."""
    monkeypatch.setenv("MDP_SINK_GROUP", "inherited")
    monkeypatch.setenv("MDP_PROCESS_GROUP", "inherited")
    settings = Settings.from_env({"MDP_PROCESS_GROUP": "of-the-run", "MDP_TOPIC_PREFIX": "p."})
    show = (
        "-c",
        "from marketdata.settings import Settings\n"
        "s = Settings.from_env()\n"
        "print(s.process_group, s.sink_group, s.topic_prefix, s.metrics_port, flush=True)",
    )
    spec = RoleSpec("show", show, {"MDP_METRICS_PORT": "7"})
    supervisor = Supervisor([spec], tmp_path, settings.to_env())
    await supervisor.start()
    process = supervisor.children[0].process
    assert process is not None
    await process.wait()
    await supervisor.aclose()
    assert (tmp_path / "show.log").read_text().splitlines()[-1] == "of-the-run mdp-sink p. 7"
