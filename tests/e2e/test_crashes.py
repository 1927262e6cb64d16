"""Kill -9 of the processor, then of the sink, at random points of a run, each restarted:
still exactly N rows, and nothing valid in the dead-letter topic."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from sandbox.binance import FakeBinance
from tests.e2e.conftest import Pipeline
from tests.e2e.test_venues import binance_trade
from tests.e2e.timeline import ms, own_minute
from tests.integration.polling import wait_until
from tests.integration.processors.support import read_topic

N = 4000


async def test_killed_processor_and_sink_lose_and_duplicate_nothing(pipeline: Pipeline) -> None:
    t0 = own_minute()
    t0_ms = ms(t0)
    rng = random.Random()
    fake = FakeBinance(now_ms=t0_ms)
    await fake.start()
    try:
        pipeline.start("binance", ["produce", "binance", "--symbols", "BTCUSDT", "--streams",
                                   "trade"],
                       {"BINANCE_API_BASE_URL": fake.rest_url,
                        "BINANCE_STREAM_URL": fake.stream_url})  # fmt: skip
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        await asyncio.sleep(0.5)
        # About 16 s of trades; the processor dies in the first half, the sink in the second.
        kill_process_at, kill_sink_at = rng.randrange(10, 40), rng.randrange(45, 75)
        for batch in range(80):
            for n in range(batch * 50, batch * 50 + 50):
                await fake.push("btcusdt@trade", binance_trade(t0_ms, n))
            if batch == kill_process_at:
                await pipeline.kill("process")
                pipeline.start("process")
            if batch == kill_sink_at:
                await pipeline.kill("sink")
                pipeline.start("sink")
            await asyncio.sleep(0.2)

        rows = await pipeline.ticks("BINANCE", "BTCUSDT", t0, t0 + timedelta(minutes=1),
                                    at_least=N, within=180)  # fmt: skip
        await asyncio.sleep(3)  # replays after the restarts, if any were kept, would land now
        rows = await pipeline.ticks("BINANCE", "BTCUSDT", t0, t0 + timedelta(minutes=1),
                                    at_least=N)  # fmt: skip
        assert sorted(int(row[0]) for row in rows) == [7000 + n for n in range(N)]
        dead = await read_topic(pipeline.settings, pipeline.settings.topics.dlq, idle_s=2)
        assert dead == []
    finally:
        await fake.aclose()
