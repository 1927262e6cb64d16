"""`mdp produce dtc` with MDP_PRODUCER_METRICS_PORT, as a process: ``/health`` says whether the
feed is connected and receiving, ``/metrics`` carries its per-instrument metrics."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from sandbox.dtc import FakeDtc, fixture_trades
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port
from tests.integration.producers.endpoints import Endpoints
from tests.integration.producers.support import closed_port
from tests.integration.roles import role_process

DTC = (("venue", "dtc"),)
ES = (("symbol", "ESZ4"), ("venue", "dtc"))


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
