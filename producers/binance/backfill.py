"""`mdp backfill binance`: REST klines of a range into ``md.bars.raw``, or trades (every trade, or
aggregate trades) into ``md.ticks.raw``, resumable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

from marketdata.errors import MarketDataError
from marketdata.inventory import newest_bar, newest_trade
from marketdata.settings import Settings
from producers.backfill import BackfillResult, Page, Progress, json_rows, publish_pages
from producers.binance.connector import rest_client
from producers.binance.history import BinanceRest, KlinePager, to_ms
from producers.binance.normalise import EXCHANGE, KLINES
from producers.binance.trades import Kind, TradePager

log = logging.getLogger(__name__)


async def backfill(
    settings: Settings, symbol: str, interval: str, start: datetime, end: datetime | None,
    *, resume: bool = False, progress: Progress | None = None,
    pager: KlinePager | None = None,
) -> BackfillResult:  # fmt: skip
    """Publish the bars of ``[start, end]``; with ``resume``, from the newest stored bar on.
    ``progress(done, expected)`` is called after each page."""
    if resume:
        newest = await newest_bar(settings, EXCHANGE, symbol.upper(), interval, KLINES)
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


async def backfill_trades(
    settings: Settings, symbol: str, kind: Kind, start: datetime, end: datetime | None,
    *, resume: bool = False, progress: Progress | None = None, rest: BinanceRest | None = None,
) -> BackfillResult:  # fmt: skip
    """Publish the trades (``kind="trades"``) or aggregate trades (``"aggTrades"``) of
    ``[start, end]``, with the live streams' sources and ids; with ``resume``, from the trade
    after the newest one of that source stored. ``progress`` measures the time range covered."""
    symbol = symbol.upper()
    pager = TradePager(rest or BinanceRest(rest_client(settings)), symbol, kind, start, end)
    if resume:
        newest = await newest_trade(settings, EXCHANGE, symbol, pager.source)
        if newest is not None and newest[0] > start:
            if not (newest[1].isascii() and newest[1].isdigit()):
                raise MarketDataError(
                    f"the newest stored {pager.source} trade of {symbol}"
                    f" has no Binance id ({newest[1]!r:.40}): cannot resume"
                )
            log.info("resuming after the newest stored trade, id %s at %s", newest[1],
                     newest[0].isoformat())  # fmt: skip
            pager.start, pager.after_id = newest[0], int(newest[1])
    try:
        return await _publish_trades(settings, pager, progress)
    finally:
        if rest is None:
            pager.rest.client.session.close()


async def _publish_trades(
    settings: Settings, pager: TradePager, progress: Progress | None
) -> BackfillResult:
    server_time = await asyncio.to_thread(pager.rest.server_time)
    first = to_ms(pager.start)
    span = max(1, (to_ms(min(pager.end or server_time, server_time)) - first) // 1000)

    def gauge(so_far: BackfillResult) -> tuple[int, int]:
        covered = (to_ms(so_far.last) - first) // 1000 if so_far.last else 0
        return min(max(covered, 0), span), span

    asked = BackfillResult(pager.symbol, "tick", pager.start, pager.end)
    result = await publish_pages(
        settings, asked, _trade_pages(pager, server_time), stage="binance.backfill",
        origin=f"binance.rest.{'historicalTrades' if pager.kind == 'trades' else 'aggTrades'}",
        progress=progress, gauge=gauge,
    )  # fmt: skip
    return replace(result, waited_s=pager.rest.waited_s, requests=pager.rest.requests)


async def _trade_pages(pager: TradePager, server_time: datetime) -> AsyncIterator[Page]:
    pages = pager.pages(server_time)
    while (page := await asyncio.to_thread(next, pages, None)) is not None:
        ticks, rejected = page
        yield Page(ticks, json_rows(rejected))
