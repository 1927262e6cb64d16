"""`mdp backfill binance`: REST klines of a range into ``md.bars.raw``, resumable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

from marketdata.inventory import newest_bar
from marketdata.settings import Settings
from producers.backfill import BackfillResult, Page, Progress, json_rows, publish_pages
from producers.binance.connector import rest_client
from producers.binance.history import KlinePager
from producers.binance.normalise import EXCHANGE

log = logging.getLogger(__name__)


async def backfill(
    settings: Settings, symbol: str, interval: str, start: datetime, end: datetime | None,
    *, resume: bool = False, progress: Progress | None = None,
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
    try:
        return await _publish_pages(settings, pager, progress)
    finally:
        if own_client:
            pager.client.session.close()


async def _publish_pages(
    settings: Settings, pager: KlinePager, progress: Progress | None
) -> BackfillResult:
    server_time = await asyncio.to_thread(pager.server_time)
    expected = pager.expected_bars(server_time)
    asked = BackfillResult(pager.symbol, pager.interval, pager.start, pager.end)
    result = await publish_pages(
        settings, asked, _pages(pager, server_time), stage="binance.backfill",
        origin="binance.rest.klines", progress=progress,
        gauge=lambda so_far: (so_far.records, max(expected, so_far.records)),
    )  # fmt: skip
    return replace(result, waited_s=pager.waited_s)


async def _pages(pager: KlinePager, server_time: datetime) -> AsyncIterator[Page]:
    pages = pager.pages(server_time)
    while (page := await asyncio.to_thread(next, pages, None)) is not None:
        bars, rejected = page
        yield Page(bars, json_rows(rejected))
