"""One backfill loop for every venue: pages of records and rejects in, one publish path out.

A venue turns its history into an async iterator of :class:`Page` (REST klines, IB's
``reqHistoricalData`` windows, a DTC history stream); :func:`publish_pages` publishes each page's
records through the shared :class:`~producers.publisher.Publisher`, dead-letters its rejects with
their reasons, moves the progress bar and counts, into one :class:`BackfillResult`, whose
:meth:`~BackfillResult.summary` is the line ``mdp backfill`` ends with.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from marketdata.topics import Topics
from producers.process import publishing
from producers.publisher import Envelope, Publisher

Progress = Callable[[int, int], None]
Opener = Callable[[], AbstractAsyncContextManager[Publisher]]


@dataclass(frozen=True, slots=True)
class Page:
    """What one request or read brought: records, and the payloads that did not normalise,
    each as it came, with why; records may come already encoded, in ``envelopes``."""

    records: Sequence[Tick | Bar]
    rejected: Sequence[tuple[bytes, str]] = ()
    envelopes: Sequence[Envelope] = ()

    @property
    def count(self) -> int:
        return len(self.records) + sum(envelope.count for envelope in self.envelopes)


def json_rows(rejected: Iterable[tuple[Any, str]]) -> list[tuple[bytes, str]]:
    """REST rows that did not normalise, each as the JSON it came as."""
    return [(json.dumps(row).encode(), reason) for row, reason in rejected]


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill asked for and what it published."""

    instrument: str  # as the summary names it: BTCUSDT, AAPL, ESZ4@CME
    interval: str  # a bar interval, or "tick"
    start: datetime  # the range asked for, after resuming
    end: datetime | None
    backwards: bool = False  # pages came newest first (IB): the summary names the end
    records: int = 0
    rejected: int = 0  # dead-lettered
    pages: int = 0
    requests: int = 0  # sent to the venue, retries included
    first: datetime | None = None  # the oldest record published
    last: datetime | None = None  # the newest
    waited_s: float = 0.0  # for the venue's rate limits or pacing
    retries: int = 0

    @property
    def bars(self) -> int:
        return self.records

    @property
    def started_at(self) -> datetime:
        return self.start

    def summary(self, topics: Topics) -> str:
        ticks = self.interval == "tick"
        when = f"before {_minute(self.end)}" if self.backwards and self.end else (
            f"from {_minute(self.start)}")  # fmt: skip
        topic = topics.ticks_raw if ticks else topics.bars_raw
        line = (f"{self.records} {'trades' if ticks else 'bars'} of {self.instrument}"
                f" {self.interval} {when} published to {topic} in {self.requests} request"
                + ("" if self.requests == 1 else "s"))  # fmt: skip
        if self.rejected:
            line += f"; {self.rejected} malformed records dead-lettered"
        if self.waited_s:
            line += f"; waited {self.waited_s:.0f}s for the venue's rate limits"
        return line


def _minute(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" + (f":{moment:%S}" if moment.second else "")


async def publish_pages(
    settings: Settings, asked: BackfillResult, pages: AsyncIterable[Page], *, stage: str,
    origin: str, gauge: Callable[[BackfillResult], tuple[int, int]],
    progress: Progress | None = None, opener: Opener | None = None,
) -> BackfillResult:  # fmt: skip
    """Publish every page, each handed to the publisher before the next is asked for (a page's
    records that gather behind a send in flight go when it is answered, with the next page's
    of their instrument); ``progress(done, total)`` after each page as the venue's ``gauge``
    measures the result so far, and once more at the end if the last page left the bar short (a
    range with gaps at its end). ``opener``: where to publish instead of a Kafka producer of
    ``settings`` (tests)."""
    opener = opener or (lambda: publishing(settings, stage, max_records=500))
    result = asked
    async with opener() as publisher:
        async for page in pages:
            await publisher.add(page.records)
            for envelope in page.envelopes:
                await publisher.add_encoded(envelope)
            await publisher.flush()
            for raw, reason in page.rejected:
                await publisher.dead(raw, reason, origin)
            result = _counted(result, page)
            if progress:
                progress(*gauge(result))
        await publisher.flush(wait=True)
    done, total = gauge(result)
    if progress and done < total:
        progress(total, total)
    return result


def _counted(result: BackfillResult, page: Page) -> BackfillResult:
    # Encoded records are not decoded again for their times: an import does not report them.
    times = [record.timestamp for record in page.records]
    first = min([*times, result.first] if result.first else times, default=None)
    last = max([*times, result.last] if result.last else times, default=None)
    return replace(result, records=result.records + page.count, first=first, last=last,
                   rejected=result.rejected + len(page.rejected), pages=result.pages + 1,
                   requests=result.requests + 1)  # fmt: skip
