"""The `mdp produce binance` process: settings in, streams to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from marketdata.kafka import create_producer, kafka_errors
from marketdata.settings import Settings
from producers.binance.backfill import rest_client
from producers.binance.live import BinanceLive, stream_names
from producers.publisher import Publisher

log = logging.getLogger(__name__)


async def run_live(
    settings: Settings, symbols: Sequence[str], kinds: Sequence[str], *, watchdog_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> list[BinanceLive]:  # fmt: skip
    if stop is None:  # the process's own: stop on SIGTERM/SIGINT
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    producer = create_producer(settings)
    async with kafka_errors():
        await producer.start()
    rest = rest_client(settings)
    try:
        publisher = Publisher(producer, settings.topics, stage="binance.live")
        # One connection per group of 1024 streams, all feeding one publisher.
        lives = [
            BinanceLive(settings.binance_stream, rest, group, publisher, watchdog_s=watchdog_s)
            for group in stream_names(symbols, kinds)
        ]
        for number, live in enumerate(lives, 1):
            log.info("connection group %d: %s", number, ", ".join(live.streams))
        await asyncio.gather(*(live.run(stop) for live in lives))
        return lives
    finally:
        await producer.stop()
        rest.session.close()
