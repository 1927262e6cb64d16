"""The `mdp produce dtc` process: settings in, DTC market data to Kafka until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.dtc.live import DtcLive
from producers.dtc.normalise import Instrument
from producers.dtc.session import Endpoint
from producers.process import publishing


async def run_live(
    settings: Settings, instruments: Sequence[Instrument], *, timeout_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> DtcLive:  # fmt: skip
    stop = stop or stop_on_signals()
    async with publishing(settings, "dtc.live") as publisher:
        live = DtcLive(Endpoint.market_data(settings), instruments, publisher,
                       timeout_s=timeout_s, linger_s=settings.producer_flush_ms / 1000)  # fmt: skip
        await live.run(stop)
        return live
