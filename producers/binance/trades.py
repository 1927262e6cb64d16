"""Binance trades of a time range over REST, for `mdp backfill binance --trades|--agg-trades`.

Neither trade endpoint pages by time all the way: ``GET /api/v3/aggTrades`` takes a time window
(``startTime`` and ``endTime`` less than an hour apart) or an id (``fromId``), and
``GET /api/v3/historicalTrades`` takes an id only. So a range is read in two steps: hour windows
from ``start`` until one holds an aggregate trade, then by id from there, until a trade after
``end`` (or, with no end, until the pages run out: caught up with now). Trades by id start at
the first trade id (``f``) of that first aggregate trade, since the trades of one aggregate
share its time: the id of the first trade at or after ``start``. A resumed backfill knows its
id already and pages by id at once. Every request goes through :class:`BinanceRest` (weight
budget, 429/418, retries); callers run the pager in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from marketdata.records import Tick
from producers.binance.history import (
    PAGE,
    BinanceRest,
    BinanceRestError,
    Rejected,
    agg_trades_after,
    normalised,
    to_ms,
    trades_after,
    within,
)
from producers.binance.normalise import rest_agg_trade

Kind = Literal["trades", "aggTrades"]
SOURCES: Final[dict[Kind, str]] = {"trades": "binance.trade", "aggTrades": "binance.aggTrade"}
# Binance refuses startTime and endTime an hour or more apart (-1127): windows of an hour less
# a millisecond, both ends inclusive.
WINDOW_MS: Final = 3_600_000 - 1


@dataclass
class TradePager:
    """The trades (``kind="trades"``: every trade, ``historicalTrades``) or aggregate trades
    (``"aggTrades"``) of ``symbol`` from ``start`` to ``end``, or from the trade after
    ``after_id`` (a resume) to ``end``; ``end`` None: up to now."""

    rest: BinanceRest
    symbol: str
    kind: Kind
    start: datetime
    end: datetime | None
    after_id: int | None = None

    def __post_init__(self) -> None:
        self.symbol = self.symbol.upper()

    @property
    def source(self) -> str:
        return SOURCES[self.kind]

    def pages(self, server_time: datetime) -> Iterator[tuple[list[Tick], Rejected]]:
        """Pages of trades, oldest first, with the rows that did not normalise and why."""
        until = self.end
        if self.after_id is not None:
            yield from self._after(self.after_id, until)
            return
        first, complete = self._first_window(min(self.end or server_time, server_time))
        if not first:
            return
        if self.kind == "trades":
            first_trade = _first_trade_id(first[0])
            yield from self._after(first_trade - 1, until)
            return
        ticks, rejected, highest = normalised(first, self.symbol, rest_agg_trade, "a")
        yield within(ticks, self.start, until), rejected
        if complete or (until is not None and any(tick.timestamp > until for tick in ticks)):
            return
        if highest is None:
            raise BinanceRestError("a page of aggregate trades with no readable id: cannot go on")
        yield from self._after(highest, until)

    def _after(self, last_id: int, until: datetime | None) -> Iterator[tuple[list[Tick], Rejected]]:
        pager = trades_after if self.kind == "trades" else agg_trades_after
        return pager(self.rest, self.symbol, last_id, max_pages=None, since=self.start,
                     until=until)  # fmt: skip

    def _first_window(self, stop: datetime) -> tuple[list[Any], bool]:
        """The aggregate trades of the first hour window from ``start`` to ``stop`` holding any
        (for ``trades``, only its first), [] when none does; and whether they are all the range
        holds (the window reached ``stop`` and was not cut at a page)."""
        limit = 1 if self.kind == "trades" else PAGE
        cursor, last = to_ms(self.start), to_ms(stop)
        while cursor <= last:
            window_end = min(cursor + WINDOW_MS, last)
            rows = self.rest.call(self.rest.client.agg_trades, self.symbol, startTime=cursor,
                                  endTime=window_end, limit=limit)  # fmt: skip
            if not isinstance(rows, list):
                raise BinanceRestError(
                    f"Binance answered a {type(rows).__name__}, not a list of rows"
                )
            if rows:
                return rows, window_end == last and len(rows) < limit
            cursor = window_end + 1
        return [], True


def _first_trade_id(row: Any) -> int:
    value = row.get("f") if isinstance(row, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise BinanceRestError(f"an aggregate trade without a first trade id (f): {row!r:.200}")
    return value
