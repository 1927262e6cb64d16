"""`mdp backfill dtc`: a range of DTC history (bars or ticks) into the raw topics, resumable.

A connection that breaks mid-stream, or a server that asks to be asked again later, is retried
with backoff from the newest record received (records at that instant are fetched again and
deduplicated downstream: bars replace themselves, ticks get the same derived ids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from marketdata.backoff import Backoff
from marketdata.errors import MarketDataError
from marketdata.inventory import newest_bar, newest_tick
from marketdata.settings import Settings
from producers.dtc.history import DtcHistoryRejected, HistoryRequest, fetch
from producers.dtc.normalise import TRADE, Instrument
from producers.dtc.session import Endpoint
from producers.process import publishing

log = logging.getLogger(__name__)
ORIGIN = "dtc.history"


@dataclass(frozen=True, slots=True)
class BackfillResult:
    records: int
    rejected: int
    started_at: datetime
    attempts: int


async def backfill(
    settings: Settings, instrument: Instrument, interval: str, start: datetime,
    end: datetime | None, *, resume: bool = False,
    progress: Callable[[float, float], None] | None = None, compress: bool = True,
    endpoint: Endpoint | None = None, max_attempts: int = 5,
) -> BackfillResult:  # fmt: skip
    """Publish the records of ``[start, end]``; with ``resume``, from the newest stored one on.
    ``progress(covered_s, total_s)`` is called after every page."""
    if resume:
        venue, symbol = instrument.venue, instrument.symbol
        newest = await (newest_tick(settings, venue, symbol, TRADE) if interval == "tick"
                        else newest_bar(settings, venue, symbol, interval))  # fmt: skip
        if newest is not None and newest > start:
            log.info("resuming from the newest stored record, %s", newest.isoformat())
            start = newest  # fetched again too: a bar may have been stored before it closed
    endpoint = endpoint or Endpoint.historical(settings)
    total = max(((end or datetime.now(UTC)) - start).total_seconds(), 1.0)
    cursor, done, rejected, attempts = start, 0, 0, 0
    backoff = Backoff(initial=1.0, maximum=30.0)
    async with publishing(settings, "dtc.backfill", max_records=500) as publisher:
        while True:
            attempts += 1
            try:
                async for page in fetch(endpoint, HistoryRequest(instrument, interval, cursor,
                                                                 end, compress)):  # fmt: skip
                    await publisher.add(page.records)
                    await publisher.flush()
                    for raw, reason in page.rejected:
                        await publisher.dead(raw, reason, ORIGIN)
                    done += len(page.records)
                    rejected += len(page.rejected)
                    if page.last is not None:
                        cursor = page.last
                    if progress:
                        progress(min((cursor - start).total_seconds(), total), total)
                break
            except MarketDataError as exc:
                if not exc.retriable or attempts >= max_attempts:
                    raise
                retry_s = exc.retry_s if isinstance(exc, DtcHistoryRejected) else None
                delay = float(retry_s) if retry_s else backoff.next_delay()
                log.warning("%s; retrying from %s in %.1fs", exc, cursor.isoformat(), delay)
                await asyncio.sleep(delay)
        await publisher.flush(wait=True)
        if progress:
            progress(total, total)
    return BackfillResult(done, rejected, start, attempts)
