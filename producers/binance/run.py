"""The `mdp produce binance` process: settings in, streams to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.binance.connector import rest_client
from producers.binance.live import BinanceLive, stream_names
from producers.process import publishing

log = logging.getLogger(__name__)


async def run_live(
    settings: Settings, symbols: Sequence[str], kinds: Sequence[str], *, watchdog_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> list[BinanceLive]:  # fmt: skip
    stop = stop or stop_on_signals()
    rest = rest_client(settings)
    try:
        async with publishing(settings, "binance.live") as publisher:
            # One connection per group of 1024 streams, all feeding one publisher.
            lives = [
                BinanceLive(
                    settings.binance_stream,
                    rest,
                    group,
                    publisher,
                    watchdog_s=watchdog_s,
                    linger_s=settings.producer_flush_ms / 1000,
                )
                for group in stream_names(symbols, kinds)
            ]
            for number, live in enumerate(lives, 1):
                log.info("connection group %d: %s", number, ", ".join(live.streams))
            await asyncio.gather(*(live.run(stop) for live in lives))
            return lives
    finally:
        rest.session.close()
