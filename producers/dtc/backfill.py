"""`mdp backfill dtc`: a range of DTC history (bars or ticks) into the raw topics, resumable.

A connection that breaks mid-stream, or a server that asks to be asked again later, is retried
with backoff from the newest record received (records at that instant are fetched again and
deduplicated downstream: bars replace themselves, ticks get the same derived ids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

from marketdata.backoff import Backoff
from marketdata.errors import MarketDataError
from marketdata.inventory import newest_bar, newest_tick
from marketdata.settings import Settings
from producers.backfill import BackfillResult, Page, Progress, publish_pages
from producers.dtc.history import DtcHistoryRejected, HistoryRequest, fetch
from producers.dtc.normalise import HISTORY, TRADE, Instrument
from producers.dtc.session import Endpoint

log = logging.getLogger(__name__)


async def backfill(
    settings: Settings, instrument: Instrument, interval: str, start: datetime,
    end: datetime | None, *, resume: bool = False, progress: Progress | None = None,
    compress: bool = True, endpoint: Endpoint | None = None, max_attempts: int = 5,
) -> BackfillResult:  # fmt: skip
    """Publish the records of ``[start, end]``; with ``resume``, from the newest stored one on.
    ``progress(covered_s, total_s)`` is called after every page."""
    if resume:
        venue, symbol = instrument.venue, instrument.symbol
        newest = await (newest_tick(settings, venue, symbol, TRADE) if interval == "tick"
                        else newest_bar(settings, venue, symbol, interval, HISTORY))  # fmt: skip
        if newest is not None and newest > start:
            log.info("resuming from the newest stored record, %s", newest.isoformat())
            start = newest  # fetched again too: a bar may have been stored before it closed
    history = RetriedHistory(endpoint or Endpoint.historical(settings),
                             HistoryRequest(instrument, interval, start, end, compress),
                             max_attempts)  # fmt: skip
    total = max(int(((end or datetime.now(UTC)) - start).total_seconds()), 1)

    def covered(so_far: BackfillResult) -> tuple[int, int]:
        return min(int(((so_far.last or start) - start).total_seconds()), total), total

    asked = BackfillResult(str(instrument), interval, start, end)
    result = await publish_pages(
        settings, asked, history.pages(), stage="dtc.backfill", origin="dtc.history",
        gauge=covered, progress=progress,
    )  # fmt: skip
    return replace(result, requests=history.attempts, retries=history.attempts - 1)


class RetriedHistory:
    """The pages of one history request, asked for again from the newest record received
    when the stream breaks or the server says it is busy."""

    def __init__(self, endpoint: Endpoint, request: HistoryRequest, max_attempts: int) -> None:
        self.endpoint = endpoint
        self.request = request
        self.max_attempts = max_attempts
        self.attempts = 0

    async def pages(self) -> AsyncIterator[Page]:
        backoff = Backoff(initial=1.0, maximum=30.0)
        while True:
            self.attempts += 1
            try:
                async for page in fetch(self.endpoint, self.request):
                    if page.last is not None:
                        self.request = replace(self.request, start=page.last)
                    yield Page(page.records, page.rejected)
                return
            except MarketDataError as exc:
                if not exc.retriable or self.attempts >= self.max_attempts:
                    raise
                retry_s = exc.retry_s if isinstance(exc, DtcHistoryRejected) else None
                delay = float(retry_s) if retry_s else backoff.next_delay()
                log.warning("%s; retrying from %s in %.1fs", exc, self.request.start.isoformat(),
                            delay)  # fmt: skip
                await asyncio.sleep(delay)
