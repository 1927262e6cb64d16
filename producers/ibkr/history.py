"""Historical bars from ``reqHistoricalData``: paging backwards in windows, paced and retried.

ib_async decodes the answer (message 17) with no check of its layout; :class:`HistoryClient`
puts a check in front of its decoder's handler (``normalise.check_history_layout``): a frame
whose field count is not the negotiated server version's, or whose values ib_async cannot read,
ends its request with no bars, and the whole frame becomes a dead letter naming the counts,
instead of bars read from the wrong fields or a request left waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ib_async import IB, BarData, Contract, RequestError

from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Bar
from producers.ibkr.contracts import record_symbol
from producers.ibkr.normalise import (
    BAR_SIZES,
    HISTORICAL_DATA,
    bar_open,
    check_history_layout,
    historical_bar,
)
from producers.ibkr.pacing import HistoricalPacer
from producers.ibkr.session import PACING

log = logging.getLogger(__name__)

DAY: Final = 86_400
# Seconds per request window: within IB's largest duration for each bar size.
PAGE_S: Final = {
    "1s": 1800, "5s": 3600, "10s": 14_400, "15s": 14_400, "30s": 28_800, "1m": DAY,
    "2m": 2 * DAY, "3m": 2 * DAY, "5m": 7 * DAY, "10m": 7 * DAY, "15m": 7 * DAY,
    "20m": 7 * DAY, "30m": 7 * DAY, "1h": 30 * DAY, "2h": 30 * DAY, "3h": 30 * DAY,
    "4h": 30 * DAY, "8h": 30 * DAY, "1d": 365 * DAY, "1w": 5 * 365 * DAY, "1M": 5 * 365 * DAY,
}  # fmt: skip
INTERVAL_S: Final = {
    name: int(size.split()[0]) * {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY,
                                  "M": 31 * DAY}[name[-1]]
    for name, size in BAR_SIZES.items()
}  # fmt: skip


def duration(seconds: int) -> str:
    """IB's duration text: seconds up to a day, then days, then years."""
    if seconds <= DAY:
        return f"{seconds} S"
    if seconds % DAY == 0 and seconds <= 365 * DAY:
        return f"{seconds // DAY} D"
    return f"{math.ceil(seconds / (365 * DAY))} Y"


def windows(start: datetime, end: datetime, interval: str) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` as request windows from the newest back, each one page long."""
    page = timedelta(seconds=PAGE_S[interval])
    result = []
    upper = end
    while upper > start:
        result.append((upper - page, upper))
        upper -= page
    return result


@dataclass(frozen=True, slots=True)
class Page:
    """One window's bars, and the rows that did not normalise with the reason."""

    bars: list[Bar]
    rejected: list[tuple[dict[str, Any], str]]


def _row(item: BarData) -> dict[str, Any]:
    return {"date": str(item.date), "open": item.open, "high": item.high, "low": item.low,
            "close": item.close, "volume": item.volume, "barCount": item.barCount}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    contract: Contract
    interval: str
    what_to_show: str = "TRADES"
    use_rth: bool = False


class HistoryClient:
    """``reqHistoricalData`` within IB's pacing; a pacing answer (162/366/420) is waited out and
    retried with the reason logged; other errors fail the request, naming the contract."""

    def __init__(
        self, ib: IB, pacer: HistoricalPacer | None = None, *, timeout_s: float = 60.0,
        retry_wait_s: float = 15.0, attempts: int = 6,
    ) -> None:  # fmt: skip
        self.ib = ib
        self.pacer = pacer or HistoricalPacer()
        self.timeout_s = timeout_s
        self.retry_wait_s = retry_wait_s
        self.attempts = attempts
        self.retries = 0
        # Frames refused by the layout check, by request id (-1: no readable id), and why.
        self._refused: dict[int, list[tuple[list[str], str]]] = {}
        self._guard()

    def _guard(self) -> None:
        """Check every 17 frame before ib_async's own handler reads it."""
        decoder = self.ib.client.decoder
        version = self.ib.client.serverVersion()
        # ib_async's own handler (not a guard installed by an earlier client on this IB)
        read: Callable[[list[str]], None] = decoder.historicalData

        def guarded(fields: list[str]) -> None:
            try:
                req_id = int(fields[1])
            except (IndexError, ValueError):
                req_id = -1
            try:
                check_history_layout(fields, version)
                read(fields)
            except Exception as exc:  # a frame must end its request, never leave it waiting
                reason = str(exc)
                if not isinstance(exc, InvalidRecord):
                    reason = (
                        f"historical data (17) not read by ib_async: {type(exc).__name__}: {exc}"
                    )
                log.error("IB %s; the frame is dead-lettered", reason)
                self._refused.setdefault(req_id, []).append((fields, reason))
                if req_id != -1:
                    self.ib.wrapper.historicalDataEnd(req_id, "", "")

        decoder.handlers[HISTORICAL_DATA] = guarded

    async def bars(
        self, request: Request, end: datetime, seconds: int, now: Callable[[], datetime]
    ) -> Page:
        """Bars opening in ``[end - seconds, end)``; ``closed`` unless still forming at ``now``."""
        contract, interval = request.contract, request.interval
        size, span = BAR_SIZES[interval], duration(seconds)
        identity = (contract.conId, end, span, size, request.what_to_show, request.use_rth)
        key = (contract.conId, contract.exchange, request.what_to_show)
        for attempt in range(1, self.attempts + 1):
            await self.pacer.acquire(identity, key)
            try:
                async with self.pacer.open:
                    raw = await asyncio.wait_for(
                        self.ib.reqHistoricalDataAsync(
                            contract, end, span, size, request.what_to_show, request.use_rth,
                            formatDate=2, timeout=0,
                        ),
                        self.timeout_s,
                    )  # fmt: skip
            except RequestError as exc:
                if exc.code == 162 and "no data" in exc.message.lower():
                    return Page([], [])
                if exc.code not in PACING or attempt == self.attempts:
                    raise MarketDataError(
                        f"{contract.localSymbol or contract.symbol}: historical data request"
                        f" ({size}, {span} to {end:%Y-%m-%d %H:%M:%S}) failed:"
                        f" IB error {exc.code}: {exc.message}",
                        retriable=exc.code in PACING,
                    ) from None
                reason = f"IB error {exc.code}: {exc.message}"
            except TimeoutError:
                reason = f"no answer within {self.timeout_s:.0f} s"
                if attempt == self.attempts:
                    raise MarketDataError(
                        f"{record_symbol(contract)}: historical data request: {reason}",
                        retriable=True,
                    ) from None
            else:
                refused = self._refused.pop(raw.reqId, []) + self._refused.pop(-1, [])
                if refused:  # none of that frame's bars, which may be half read
                    return Page([], [({"fields": f}, why) for f, why in refused])
                return self._normalise(raw, request, end, seconds, now())
            self.retries += 1
            log.warning("%s: historical request (%s to %s) answered %s; retrying in %.0f s",
                        record_symbol(contract), span, end.isoformat(), reason,
                        self.retry_wait_s)  # fmt: skip
            await asyncio.sleep(self.retry_wait_s)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _normalise(
        raw: list[BarData], request: Request, end: datetime, seconds: int, now: datetime
    ) -> Page:
        symbol = record_symbol(request.contract)
        length = timedelta(seconds=INTERVAL_S[request.interval])
        lower = end - timedelta(seconds=seconds)
        page = Page([], [])
        for item in raw:
            values = (item.open, item.high, item.low, item.close, item.volume, item.barCount)
            closed = bar_open(item.date) + length <= now  # else still forming
            try:
                bar = historical_bar(item.date, values, symbol, request.interval, closed=closed)
            except InvalidRecord as exc:
                page.rejected.append((_row(item), str(exc)))
                continue
            if lower <= bar.timestamp < end:
                page.bars.append(bar)
        return page

    async def pages(
        self, request: Request, start: datetime, end: datetime, now: Callable[[], datetime]
    ) -> AsyncIterator[Page]:
        """The bars of ``[start, end)``, one window at a time from the newest back."""
        for lower, upper in windows(start, end, request.interval):
            page = await self.bars(request, upper, int((upper - lower).total_seconds()), now)
            page.bars[:] = [bar for bar in page.bars if bar.timestamp >= start]
            yield page
