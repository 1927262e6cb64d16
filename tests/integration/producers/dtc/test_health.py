"""`mdp produce dtc` with MDP_PRODUCER_METRICS_PORT, as a process: ``/health`` says whether the
feed is connected and receiving, ``/metrics`` carries its per-instrument metrics."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from sandbox.dtc import FakeDtc, fixture_trades
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port
from tests.integration.producers.support import closed_port
from tests.integration.roles import role_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DTC = (("venue", "dtc"),)
ES = (("symbol", "ESZ4"), ("venue", "dtc"))


def _get(url: str) -> tuple[int, str] | None:
    """The status and body of ``url``; None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


class Endpoints:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def health(self, wanted: int, within: float = 30) -> None:
        """Poll ``/health`` until it answers ``wanted``; fail the test otherwise."""
        async with asyncio.timeout(within):
            while True:
                answer = await asyncio.to_thread(_get, f"{self.base}/health")
                if answer is not None and answer[0] == wanted:
                    return
                await asyncio.sleep(0.1)

    async def metrics(self) -> Samples:
        answer = await asyncio.to_thread(_get, f"{self.base}/metrics")
        assert answer is not None
        assert answer[0] == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer[1])
            for sample in family.samples
        }

    async def metrics_until(self, condition: Callable[[Samples], bool]) -> Samples:
        async with asyncio.timeout(30):
            while True:
                samples = await self.metrics()
                if condition(samples):
                    return samples
                await asyncio.sleep(0.1)


async def test_health_is_connected_and_receiving_and_metrics_count_each_instruments_reconnects(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())
    venue = FakeDtc(port=free_port())  # not started: the venue is away at first
    metrics_port = free_port()
    env = {**settings.to_env(), "DTC_PORT": str(venue.port), "DTC_HEARTBEAT_S": "1",
           "DTC_HISTORICAL_PORT": str(closed_port()),
           "MDP_PRODUCER_METRICS_PORT": str(metrics_port)}  # fmt: skip
    process = role_process(["produce", "dtc", "--symbols", "ESZ4@CME,NQZ4@CME"], env, log)
    processes.append(process)
    producer = Endpoints(metrics_port)
    await producer.health(503)  # serving, not connected
    away = await producer.metrics()
    assert away[("mdp_producer_connected", DTC)] == 0
    assert away[("mdp_producer_reconnects_total", ES)] == 0  # a failed connect is no reconnect

    await venue.start()
    again: FakeDtc | None = None
    try:
        await wait_until(lambda: venue.subscriptions >= 2, within=30)
        await producer.health(200)
        before = (await producer.metrics())[("mdp_producer_seconds_since_last_data", ES)]
        await venue.trade("ESZ4", fixture_trades()[0])
        receiving = await producer.metrics_until(
            lambda s: s[("mdp_producer_seconds_since_last_data", ES)] < before
        )
        assert receiving[("mdp_producer_connected", DTC)] == 1
        assert receiving[("mdp_producer_seconds_since_last_data", ES)] < 5
        nq = (("symbol", "NQZ4"), ("venue", "dtc"))  # subscribed, no trade yet: since the start
        assert receiving[("mdp_producer_seconds_since_last_data", nq)] >= before

        await venue.aclose()  # the venue drops the connection and refuses new ones
        await producer.health(503)
        lost = await producer.metrics()
        assert lost[("mdp_producer_connected", DTC)] == 0
        assert lost[("mdp_producer_reconnects_total", ES)] == 1
        assert lost[("mdp_producer_reconnects_total", nq)] == 1

        again = FakeDtc(port=venue.port)
        await again.start()
        await producer.health(200)
        back = await producer.metrics_until(
            lambda s: s[("mdp_producer_gaps_unfilled_total", ES)] == 1
        )
        assert back[("mdp_producer_connected", DTC)] == 1
        assert back[("mdp_producer_reconnects_total", ES)] == 1
        # DTC_HISTORICAL_PORT refuses: neither instrument's gap could be fetched again.
        assert back[("mdp_producer_gaps_unfilled_total", nq)] == 1
        assert back[("mdp_producer_gaps_filled_total", ES)] == 0
    finally:
        for fake in (venue, again):
            if fake is not None:
                await fake.aclose()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 10) == 0
