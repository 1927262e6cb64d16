"""Accepted alerts survive a broker outage and a restart of the app while the broker is away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from marketdata.codec import TickBatch, decode
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.outages import Outage, kafka_outage
from tests.integration.processors.support import free_port, read_topic
from tests.integration.roles import role_process
from tests.integration.webhook.serving import serving
from tests.integration.webhook.test_webhook import SECRET, post
from tests.services import Found
from webhook.auth import sign


def _alert(n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ticker": "BTCUSDT", "exchange": "BINANCE", "price": f"{100 + n}",
                       "time": "2024-03-01T12:00:00Z", "n": n}).encode()  # fmt: skip
    return body, {"X-Signature": sign(body, SECRET.encode())}


async def _health(url: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
            return response.status, await response.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def _up(url: str, words: str) -> None:
    async with asyncio.timeout(30):
        while words not in (await _health(url))[1]:  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.2)


async def test_nothing_accepted_is_lost_across_an_outage_and_a_restart(
    settings: Settings, services: Found, tmp_path: Path, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    await ensure_topics(settings, settings.topics.all())
    async with kafka_outage(settings, services) as outage:
        await _across_an_outage(settings, outage, tmp_path, log, processes)


async def _across_an_outage(
    settings: Settings, outage: Outage, tmp_path: Path, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": outage.settings.kafka_bootstrap,
           "MDP_TOPIC_PREFIX": settings.topic_prefix, "TRADINGVIEW_HMAC_SECRET": SECRET,
           "MDP_WEBHOOK_PORT": str(port), "MDP_WEBHOOK_SPOOL_DIR": str(tmp_path / "spool"),
           "MDP_WEBHOOK_PUBLISH_TIMEOUT_S": "1.0"}  # fmt: skip
    processes.append(role_process(["webhook"], env, log))
    await _up(url, "ready: kafka connected")
    outcomes = []

    async def send(numbers: range) -> None:
        for n in numbers:
            started = asyncio.get_running_loop().time()
            status, text = await post(url, *_alert(n))
            assert status == 202, text
            assert asyncio.get_running_loop().time() - started < 3.0  # TradingView's budget
            outcomes.append(json.loads(text)["status"])

    await send(range(10))
    await outage.start()
    try:
        await send(range(10, 20))
        processes[0].send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells it.
        assert await asyncio.to_thread(processes[0].wait, 30) in {0, -signal.SIGTERM}
        processes.append(role_process(["webhook"], env, log))  # the broker is still away
        await _up(url, "ready: spooling")
        await send(range(20, 30))
    finally:
        await outage.stop()
    assert outcomes[:10] == ["accepted"] * 10
    assert set(outcomes[10:]) == {"spooled"}
    await _up(url, "ready: kafka connected")  # the spool has drained

    numbers: list[object] = []
    for message in await read_topic(settings, settings.topics.ticks_raw, idle_s=3):
        batch = decode(message.value)
        assert isinstance(batch, TickBatch)
        numbers.extend(t.extras["n"] for t in batch.records if t.extras)
    assert numbers == list(range(30))  # every accepted alert, once, in order


@contextlib.asynccontextmanager
async def _serving(env: dict[str, str]) -> AsyncIterator[str]:
    async with serving(Settings.from_env(env)) as url:
        yield url


async def _spool_numbers(settings: Settings) -> list[object]:
    numbers: list[object] = []
    for message in await read_topic(settings, settings.topics.ticks_raw, idle_s=3):
        batch = decode(message.value)
        assert isinstance(batch, TickBatch)
        numbers.extend(t.extras["n"] for t in batch.records if t.extras)
    return numbers


async def test_a_torn_spool_tail_loses_no_alert_acknowledged_after_it(
    settings: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings, settings.topics.all())
    spool = tmp_path / "spool"
    env = {"MDP_TOPIC_PREFIX": settings.topic_prefix, "TRADINGVIEW_HMAC_SECRET": SECRET,
           "MDP_WEBHOOK_SPOOL_DIR": str(spool), "MDP_WEBHOOK_PUBLISH_TIMEOUT_S": "0.5"}  # fmt: skip
    away = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}  # nothing listens

    def spool_file() -> Path:  # spool.log: the JSON-lines format before frames
        (found,) = [p for p in spool.iterdir() if p.name in {"spool.bin", "spool.log"}]
        return found

    sizes = []
    async with _serving(away) as url:
        for n in range(3):
            status, text = await post(url, *_alert(n))
            assert (status, json.loads(text)["status"]) == (202, "spooled"), text
            sizes.append(spool_file().stat().st_size)
    # A crash in the middle of appending a fourth alert (never acknowledged): half its bytes.
    third = spool_file().read_bytes()[sizes[1] : sizes[2]]
    with spool_file().open("ab") as file:
        file.write(third[: len(third) // 2])

    async with _serving(away) as url:
        for n in range(10, 15):
            status, text = await post(url, *_alert(n))
            assert (status, json.loads(text)["status"]) == (202, "spooled"), text
    async with _serving({**env, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap}) as url:
        await _up(url, "ready: kafka connected")  # the spool has drained
    assert await _spool_numbers(settings) == [0, 1, 2, 10, 11, 12, 13, 14]
