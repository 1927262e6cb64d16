"""The `mdp produce ibkr` process: settings in, TWS data to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.ibkr.contracts import Spec
from producers.ibkr.live import VENUE, IbkrLive, IbkrStats, LiveOptions
from producers.process import publishing
from producers.reconnect import ReconnectLoop


async def run_live(
    settings: Settings, specs: Sequence[Spec], options: LiveOptions,
    stop: asyncio.Event | None = None,
) -> IbkrLive:  # fmt: skip
    stop = stop or stop_on_signals()
    stats = IbkrStats(VENUE, watchdog_s=options.watchdog_s)  # /health reads it
    async with publishing(settings, "ibkr.live", feeds=[stats]) as publisher:
        live = IbkrLive(settings, specs, publisher, options, stats=stats)
        await ReconnectLoop(live, options.timing()).run(stop)
        return live
