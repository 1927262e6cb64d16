"""The `mdp produce dtc` process: settings in, DTC market data to Kafka until SIGTERM/SIGINT;
with MDP_PRODUCER_METRICS_PORT, ``/health`` says whether the feed is connected and receiving."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from producers.dtc.live import DtcLive, DtcStats
from producers.dtc.normalise import Instrument
from producers.dtc.session import Endpoint
from producers.process import publishing


async def run_live(
    settings: Settings, instruments: Sequence[Instrument], *, timeout_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> DtcLive:  # fmt: skip
    """``timeout_s`` (``--timeout``): the silence after which the connection is replaced."""
    stop = stop or stop_on_signals()
    endpoint = Endpoint.market_data(settings)
    stats = DtcStats.watching(instruments, endpoint, timeout_s)
    async with publishing(settings, "dtc.live", feeds=[stats]) as publisher:
        live = DtcLive(endpoint, instruments, publisher, stats=stats,
                       history=Endpoint.historical(settings))  # fmt: skip
        await live.run(stop)
        return live
