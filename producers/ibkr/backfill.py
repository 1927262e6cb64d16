"""`mdp backfill ibkr`: ``reqHistoricalData`` pages of a range into ``md.bars.raw``, resumable.

Pages go backwards from the end of the range, one window (the largest IB allows for the bar
size) per request, within IB's pacing rules (``producers.ibkr.pacing``). ``resume`` continues
below the oldest bar of the range already in the database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

from marketdata.errors import ConfigError, MarketDataError
from marketdata.inventory import oldest_bar
from marketdata.settings import Settings
from producers.backfill import BackfillResult, Page, Progress, json_rows, publish_pages
from producers.ibkr import session
from producers.ibkr.contracts import EXCHANGE, Spec, record_symbol
from producers.ibkr.history import HistoryClient, Request, windows
from producers.ibkr.live import what_to_show
from producers.ibkr.normalise import BAR_SIZES, BARS
from producers.ibkr.pacing import HistoricalPacer

log = logging.getLogger(__name__)


async def backfill(
    settings: Settings, spec: Spec, interval: str, start: datetime, end: datetime | None, *,
    resume: bool = False, client_id: int | None = None, use_rth: bool = False,
    progress: Progress | None = None, pacer: HistoricalPacer | None = None,
    retry_wait_s: float = 15.0,
) -> BackfillResult:  # fmt: skip
    """Publish the bars of ``[start, end)`` (``end`` default: now). ``progress(done, total)``
    counts request windows."""
    if interval not in BAR_SIZES:
        raise ConfigError(f"bar size {interval!r}: use one of {', '.join(BAR_SIZES)}")
    end = end or datetime.now(UTC).replace(microsecond=0)
    if start >= end:
        raise ConfigError(f"--start {start.isoformat()} is not before --end {end.isoformat()}")
    ib = await session.connect(settings, settings.ibkr_client_id + 1 if client_id is None
                               else client_id)  # fmt: skip
    try:
        good, bad = await session.qualify(ib, [spec])
        if spec not in good:
            raise MarketDataError(f"instrument {spec.text}: {bad[spec]}")
        contract = good[spec]
        symbol = record_symbol(contract)
        if resume:
            oldest = await oldest_bar(
                settings, EXCHANGE, symbol, interval, BARS, start=start, end=end
            )
            if oldest is not None:
                log.info("resuming below the oldest stored bar, %s", oldest.isoformat())
                end = oldest
        client = HistoryClient(ib, pacer, retry_wait_s=retry_wait_s)
        request = Request(contract, interval, what_to_show(contract), use_rth)
        return await _publish(settings, client, request, start, end, progress=progress)
    finally:
        ib.disconnect()


async def _publish(
    settings: Settings, client: HistoryClient, request: Request, start: datetime, end: datetime,
    *, progress: Progress | None,
) -> BackfillResult:  # fmt: skip
    total = len(windows(start, end, request.interval))
    asked = BackfillResult(record_symbol(request.contract), request.interval, start, end,
                           backwards=True)  # fmt: skip
    result = await publish_pages(
        settings, asked, _pages(client, request, start, end), stage="ibkr.backfill",
        origin="ibkr.historical", progress=progress, gauge=lambda so_far: (so_far.pages, total),
    )  # fmt: skip
    return replace(result, requests=result.pages + client.retries, retries=client.retries,
                   waited_s=client.pacer.waited_s)  # fmt: skip


async def _pages(
    client: HistoryClient, request: Request, start: datetime, end: datetime
) -> AsyncIterator[Page]:
    async for page in client.pages(request, start, end, lambda: datetime.now(UTC)):
        yield Page(page.bars, json_rows(page.rejected))
