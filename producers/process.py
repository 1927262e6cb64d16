"""What every producer process shares: stopping on SIGTERM/SIGINT, and a started publisher."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from marketdata.kafka import create_producer, kafka_errors
from marketdata.settings import Settings
from producers.publisher import Publisher


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for the process's main loop to end cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@asynccontextmanager
async def publishing(
    settings: Settings, stage: str, *, max_records: int = 100
) -> AsyncIterator[Publisher]:
    """A publisher on a started Kafka producer, stopped (after its sends) on the way out."""
    producer = create_producer(settings)
    async with kafka_errors():
        await producer.start()
    try:
        yield Publisher(producer, settings.topics, stage=stage, max_records=max_records)
    finally:
        await producer.stop()
