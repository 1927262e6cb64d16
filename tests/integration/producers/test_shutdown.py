"""`mdp produce` is gone within 2 s of SIGTERM, with code 0 and its metrics port released, also
when the broker is unreachable at that moment (it once ignored SIGTERM, logging connection errors
several times a second), and says in one line how many records it could not deliver."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marketdata.records import Tick
from marketdata.settings import Settings
from sandbox import FIXTURES as RECORDINGS
from sandbox.binance import FakeBinance
from sandbox.dtc import FakeDtc, fixture_trades
from sandbox.tws import FakeTws, recorded_trades
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port, read_ticks
from tests.integration.roles import role_process
from tests.integration.stopping import PRODUCER_EXIT_WITHIN_S, listening, stop_in_time


async def _delivered(settings: Settings, count: int) -> None:
    """Wait until ``count`` ticks are in the raw topic: all sent before the outage arrived."""
    ticks: list[Tick] = []
    for _ in range(30):
        ticks = await read_ticks(settings, settings.topics.ticks_raw, idle_s=0.5)
        if len(ticks) >= count:
            break
    assert len(ticks) == count


BINANCE_TRADE = RECORDINGS / "binance" / "trade.json"
T0_MS = 1_709_294_400_000  # 2024-03-01 12:00 UTC


@pytest.fixture
async def dtc() -> AsyncIterator[FakeDtc]:
    server = FakeDtc()
    await server.start()
    yield server
    await server.aclose()


async def test_a_producer_whose_broker_is_gone_stops_and_says_what_was_not_delivered(
    settings: Settings, broker: KafkaProxy, dtc: FakeDtc, log: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    metrics_port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "MDP_TOPIC_PREFIX": settings.topic_prefix,
           "DTC_PORT": str(dtc.port), "DTC_ENCODING": "json", "DTC_HEARTBEAT_S": "1",
           "MDP_PRODUCER_METRICS_PORT": str(metrics_port)}  # fmt: skip
    producer = role_process(["produce", "dtc", "--symbols", "ESZ4@CME"], env, log)
    processes.append(producer)
    await wait_until(lambda: dtc.subscriptions >= 1, within=30, step=0.05)
    trades = fixture_trades()[:10]
    for trade in trades[:4]:
        await dtc.trade("ESZ4", trade)
    await _delivered(settings, 4)
    assert listening(metrics_port)

    await broker.cut()
    for trade in trades[4:]:
        await dtc.trade("ESZ4", trade)
    await asyncio.sleep(1.5)  # read and handed to the producer, which has no broker
    text = await stop_in_time(producer, metrics_port, log, "producer", PRODUCER_EXIT_WITHIN_S)
    counts = re.findall(r"dtc\.live: (\d+) records could not be delivered to Kafka", text)
    assert counts == ["6"]


async def test_a_binance_producer_whose_broker_is_gone_stops_and_says_what_was_not_delivered(
    settings: Settings, broker: KafkaProxy, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    fake = FakeBinance(now_ms=T0_MS + 60_000)
    await fake.start()
    try:
        metrics_port = free_port()
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
               "MDP_TOPIC_PREFIX": settings.topic_prefix, "BINANCE_API_BASE_URL": fake.rest_url,
               "BINANCE_STREAM_URL": fake.stream_url,
               "MDP_PRODUCER_METRICS_PORT": str(metrics_port)}  # fmt: skip
        args = ["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade"]
        producer = role_process(args, env, log)
        processes.append(producer)
        await wait_until(lambda: fake.subscriptions >= 1, within=30, step=0.05)
        await asyncio.sleep(0.3)
        trade = json.loads(BINANCE_TRADE.read_text())["data"]
        events = [{**trade, "t": 1000 + n, "T": T0_MS + n, "E": T0_MS + n + 2} for n in range(9)]
        for event in events[:4]:
            await fake.push("btcusdt@trade", event)
        await _delivered(settings, 4)

        await broker.cut()
        for event in events[4:]:
            await fake.push("btcusdt@trade", event)
        await asyncio.sleep(1.5)
        text = await stop_in_time(
            producer, metrics_port, log, "binance producer", PRODUCER_EXIT_WITHIN_S
        )
        counts = re.findall(r"binance\.live: (\d+) records could not be delivered", text)
        assert counts == ["5"]
    finally:
        await fake.aclose()


async def test_an_ibkr_producer_whose_broker_is_gone_stops_and_says_what_was_not_delivered(
    settings: Settings, broker: KafkaProxy, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    tws = FakeTws()
    await tws.start()
    try:
        metrics_port = free_port()
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
               "MDP_TOPIC_PREFIX": settings.topic_prefix, "IBKR_PORT": str(tws.port),
               "MDP_PRODUCER_METRICS_PORT": str(metrics_port)}  # fmt: skip
        args = ["produce", "ibkr", "--symbols", "STK:AAPL:SMART:USD", "--no-bars"]
        producer = role_process(args, env, log)
        processes.append(producer)
        await wait_until(lambda: len(tws.subscribed("AllLast")) >= 1, within=30)
        rows = recorded_trades()["AAPL"]
        t0 = 1_709_305_200  # 2024-03-01 15:00:00 UTC
        tws.publish_trade("AAPL", t0 + rows[0]["offset_s"], rows[0])
        await _delivered(settings, 1)

        await broker.cut()
        for row in rows[1:]:
            tws.publish_trade("AAPL", t0 + row["offset_s"], row)
        await asyncio.sleep(1.5)
        text = await stop_in_time(
            producer, metrics_port, log, "ibkr producer", PRODUCER_EXIT_WITHIN_S
        )
        counts = re.findall(r"ibkr\.live: (\d+) records could not be delivered", text)
        assert counts == [str(len(rows) - 1)]
    finally:
        await tws.aclose()
