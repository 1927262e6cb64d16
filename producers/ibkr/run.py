"""The `mdp produce ibkr` process: settings in, TWS data to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.ibkr.contracts import Spec
from producers.ibkr.live import IbkrLive, LiveOptions
from producers.process import publishing


async def run_live(
    settings: Settings, specs: Sequence[Spec], options: LiveOptions,
    stop: asyncio.Event | None = None,
) -> IbkrLive:  # fmt: skip
    stop = stop or stop_on_signals()
    async with publishing(settings, "ibkr.live") as publisher:
        options = dataclasses.replace(options, flush_s=settings.producer_flush_ms / 1000)
        live = IbkrLive(settings, specs, publisher, options)
        await live.run(stop)
        return live
