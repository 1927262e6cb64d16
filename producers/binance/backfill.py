"""`mdp backfill binance`: REST klines of a range into ``md.bars.raw``, resumable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from binance.spot import Spot

from marketdata.inventory import newest_bar
from marketdata.settings import Settings
from producers.binance.history import KlinePager
from producers.binance.normalise import EXCHANGE
from producers.process import publishing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackfillResult:
    bars: int
    rejected: int
    started_at: datetime
    waited_s: float


def rest_client(settings: Settings, *, time_unit: str | None = None) -> Spot:
    """The REST client; ``time_unit="MICROSECOND"`` asks Binance for µs times (the
    ``X-MBX-TIME-UNIT`` header). Either unit is read right (``marketdata.epoch``)."""
    key = settings.binance_api_key.get_secret_value() if settings.binance_api_key else None
    return Spot(api_key=key, base_url=settings.binance_rest, show_limit_usage=True, timeout=30,
                time_unit=time_unit)  # fmt: skip


async def backfill(
    settings: Settings, symbol: str, interval: str, start: datetime, end: datetime | None,
    *, resume: bool = False, progress: Callable[[int, int], None] | None = None,
    pager: KlinePager | None = None,
) -> BackfillResult:  # fmt: skip
    """Publish the bars of ``[start, end]``; with ``resume``, from the newest stored bar on.
    ``progress(done, expected)`` is called after each page."""
    if resume:
        newest = await newest_bar(settings, EXCHANGE, symbol.upper(), interval)
        if newest is not None and newest > start:
            log.info("resuming from the newest stored bar, %s", newest.isoformat())
            start = newest  # re-fetched too: it may have been stored before it closed
    own_client = pager is None
    pager = pager or KlinePager(rest_client(settings), symbol, interval, start, end)
    pager.start = start
    pager.progress = progress
    try:
        return await _publish_pages(settings, pager, start)
    finally:
        if own_client:
            pager.client.session.close()


async def _publish_pages(settings: Settings, pager: KlinePager, start: datetime) -> BackfillResult:
    server_time = await asyncio.to_thread(pager.server_time)
    expected = pager.expected_bars(server_time)
    done = rejected = 0
    async with publishing(settings, "binance.backfill", max_records=500) as publisher:
        pages = pager.pages(server_time)
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            bars, bad = page
            await publisher.add(bars)
            await publisher.flush()
            await publisher.dead_rows(bad, "binance.rest.klines")
            done += len(bars)
            rejected += len(bad)
            if pager.progress:
                pager.progress(done, max(expected, done))
        await publisher.flush(wait=True)
    return BackfillResult(done, rejected, start, pager.waited_s)
