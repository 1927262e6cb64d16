"""The `mdp produce binance` process: settings in, streams to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.binance.connector import asked_time_unit, rest_client
from producers.binance.live import BinanceLive, BinanceStats, Connection, stream_names
from producers.process import publishing
from producers.reconnect import ReconnectLoop, Timing

log = logging.getLogger(__name__)


async def run_live(
    settings: Settings, symbols: Sequence[str], kinds: Sequence[str], *, watchdog_s: float = 30.0,
    max_backoff_s: float = 30.0, stop: asyncio.Event | None = None,
) -> list[BinanceLive]:  # fmt: skip
    stop = stop or stop_on_signals()
    groups = stream_names(symbols, kinds)
    # One connection per group of 1024 streams, each a feed of its own, all on one publisher.
    feeds = [BinanceStats.of_streams(group, venue="binance" if len(groups) == 1 else
                                     f"binance.{number}", watchdog_s=watchdog_s)
             for number, group in enumerate(groups, 1)]  # fmt: skip
    timing = Timing(watchdog_s=watchdog_s, max_backoff_s=max_backoff_s)
    rest = rest_client(settings)  # asks for the streams' unit: the gap fill's copies dedupe
    try:
        async with publishing(settings, "binance.live", feeds=feeds) as publisher:
            lives = [
                BinanceLive(settings.binance_stream, rest, group, publisher, stats=stats,
                            time_unit=asked_time_unit(settings))
                for group, stats in zip(groups, feeds, strict=True)
            ]  # fmt: skip
            for number, live in enumerate(lives, 1):
                log.info("connection group %d: %s", number, ", ".join(live.streams))
            await asyncio.gather(*(ReconnectLoop[Connection](live, timing).run(stop)
                                   for live in lives))  # fmt: skip
            return lives
    finally:
        rest.session.close()
