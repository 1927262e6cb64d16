"""The `mdp produce ibkr` process: settings in, TWS data to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

from marketdata.kafka import create_producer, kafka_errors
from marketdata.settings import Settings
from producers.ibkr.contracts import Spec
from producers.ibkr.live import IbkrLive, LiveOptions
from producers.publisher import Publisher


async def run_live(
    settings: Settings, specs: Sequence[Spec], options: LiveOptions,
    stop: asyncio.Event | None = None,
) -> IbkrLive:  # fmt: skip
    if stop is None:  # the process's own: stop on SIGTERM/SIGINT
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    producer = create_producer(settings)
    async with kafka_errors():
        await producer.start()
    try:
        live = IbkrLive(settings, specs, Publisher(producer, settings.topics, stage="ibkr.live"),
                        options)  # fmt: skip
        await live.run(stop)
        return live
    finally:
        await producer.stop()
