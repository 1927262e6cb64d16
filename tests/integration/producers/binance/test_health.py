"""`mdp produce binance` with MDP_PRODUCER_METRICS_PORT, as a process: ``/health`` says whether
its feed is connected and receiving, ``/metrics`` carries the per-instrument reconnects, gaps
filled and data age of each connection group."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from sandbox import FIXTURES as RECORDINGS
from sandbox.binance import FakeBinance
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port
from tests.integration.producers.endpoints import Endpoints
from tests.integration.roles import role_process

BINANCE = (("venue", "binance"),)
BTC = (("symbol", "BTCUSDT"), ("venue", "binance"))
ETH = (("symbol", "ETHUSDT"), ("venue", "binance"))
T0_MS = 1_709_294_400_000  # 2024-03-01 12:00 UTC


def trade(n: int) -> dict[str, object]:
    event = json.loads((RECORDINGS / "binance" / "trade.json").read_text())["data"]
    return {**event, "t": 1000 + n, "T": T0_MS + n, "E": T0_MS + n + 2}


async def test_health_and_per_instrument_metrics_through_a_dropped_connection(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())
    fake = FakeBinance(now_ms=T0_MS + 60_000)
    await fake.start()
    metrics_port = free_port()
    env = {**settings.to_env(), "BINANCE_API_BASE_URL": fake.rest_url,
           "BINANCE_STREAM_URL": fake.stream_url,
           "MDP_PRODUCER_METRICS_PORT": str(metrics_port)}  # fmt: skip
    process = role_process(
        ["produce", "binance", "--symbols", "BTCUSDT,ETHUSDT", "--streams", "trade"], env, log
    )
    processes.append(process)
    producer = Endpoints(metrics_port)
    try:
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        await producer.health(200)
        before = (await producer.metrics())[("mdp_producer_seconds_since_last_data", BTC)]
        await fake.push("btcusdt@trade", trade(0))
        receiving = await producer.metrics_until(
            lambda s: s[("mdp_producer_seconds_since_last_data", BTC)] < before
        )
        assert receiving[("mdp_producer_connected", BINANCE)] == 1
        assert receiving[("mdp_producer_seconds_since_last_data", ETH)] >= before  # no trade yet

        fake.record_trade(trade(1))  # traded while the connection is down
        await fake.drop_connections()
        back = await producer.metrics_until(
            lambda s: s[("mdp_producer_gaps_filled_total", BTC)] == 1
        )
        assert back[("mdp_producer_reconnects_total", BTC)] == 1
        assert back[("mdp_producer_reconnects_total", ETH)] == 1
        assert back[("mdp_producer_gaps_unfilled_total", BTC)] == 0
        assert back[("mdp_producer_gaps_filled_total", ETH)] == 0  # nothing of it to refetch
        await producer.health(200)
    finally:
        await fake.aclose()
    await producer.health(503)  # the venue is gone: not connected
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 10) == 0
