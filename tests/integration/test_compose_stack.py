"""compose.yaml's sandbox mode, run here without Docker: the sandbox venues with their services'
commands, the producers with their services' commands and environment, each compose service
name standing for a loopback address of its own. Compose's own healthcheck of each producer
passes once it is connected to its venue and receiving, and fails when its venue goes away; the
producers publish what their venues send. No Docker engine runs here: this is what can be run
of the stack (tests/unit/test_compose.py checks the rest of the file)."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.polling import wait_until
from tests.integration.producers.support import closed_port
from tests.integration.roles import role_process
from tests.unit.test_compose import VENUE_OF, _command, _environment, _services, _with_defaults

ROOT = Path(__file__).resolve().parents[2]


async def _healthcheck(service: str, env: dict[str, str]) -> int:
    """The service's healthcheck command, run as Docker would (the image's python: ours)."""
    test = _services()[service]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *test[2:], env={**os.environ, **env}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return await process.wait()
    finally:
        if process.returncode is None:  # cancelled: the test's time is up
            process.kill()
            await process.wait()


async def _until_healthcheck(service: str, env: dict[str, str], wanted: int) -> None:
    async with asyncio.timeout(40):
        while await _healthcheck(service, env) != wanted:  # noqa: ASYNC110 - a command, no event
            await asyncio.sleep(0.5)


def _published(port: int) -> float:
    """The records a producer has published, from its /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mdp_producer_records_total"
    )


def _has_published(port: int) -> bool:
    return _published(port) > 0


def _venue(service: str, address: str, log: Path) -> subprocess.Popen[bytes]:
    """The sandbox service's own command, listening on ``address`` instead of every interface."""
    command = _command(service)
    command[command.index("--host") + 1] = address
    assert command == [_with_defaults(part) for part in command]  # nothing to interpolate
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, *command], stdout=output,
                                stderr=subprocess.STDOUT)  # fmt: skip


async def test_compose_sandbox_producers_become_healthy_against_their_venues(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())  # compose's `topics` job
    # A loopback address per sandbox service, for its name: the ports stay compose's own.
    net = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    addresses = {venue: f"{net}.{n}" for n, venue in enumerate(VENUE_OF.values(), start=1)}
    venues = {venue: _venue(venue, address, log) for venue, address in addresses.items()}
    processes.extend(venues.values())

    envs: dict[str, dict[str, str]] = {}
    for producer in VENUE_OF:
        env = {key: _with_defaults(value) for key, value in _environment(producer).items()}
        for venue, address in addresses.items():
            env = {key: value.replace(venue, address) for key, value in env.items()}
        # The session's broker and topics; a port of its own (each container has its own).
        env |= {key: value for key, value in settings.to_env().items()
                if key in {"KAFKA_BOOTSTRAP_SERVERS", "MDP_TOPIC_PREFIX"}}  # fmt: skip
        env["MDP_PRODUCER_METRICS_PORT"] = str(closed_port())
        assert Settings.from_env(env).providers_sandbox_mode == "sandbox"
        envs[producer] = env
        command = [_with_defaults(part) for part in _command(producer)]  # the symbols
        processes.append(role_process(command, env, log))

    await asyncio.gather(*(_until_healthcheck(name, env, 0) for name, env in envs.items()))
    for env in envs.values():
        port = int(env["MDP_PRODUCER_METRICS_PORT"])
        await wait_until(functools.partial(_has_published, port))

    venues["sandbox-tws"].terminate()
    await asyncio.to_thread(venues["sandbox-tws"].wait, 10)
    await _until_healthcheck("producer-ibkr", envs["producer-ibkr"], 1)
    for producer in ("producer-binance", "producer-dtc"):
        assert await _healthcheck(producer, envs[producer]) == 0, producer
    assert all(process.poll() is None for process in processes[len(venues) :])
