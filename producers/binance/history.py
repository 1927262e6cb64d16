"""Binance REST klines, page by page, within the request-weight limit.

Spot allows 6000 request weight a minute per IP; a klines request of up to 1000 bars weighs 2.
The pager reads the used weight from each answer's ``X-MBX-USED-WEIGHT-1m`` header and, past
``safety`` of the limit, waits for the next minute before asking again. On 429 it waits for
``Retry-After``; on 418 (the IP is banned) it stops and says until when; network and server
errors are retried with backoff; any other client error (a bad symbol or interval) stops with
Binance's own message. binance-connector is synchronous: callers run the pager in a thread.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import requests

from marketdata.backoff import Backoff
from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord, MarketDataError
from marketdata.records import Bar, Tick
from producers.binance.connector import ClientError, RestClient, ServerError
from producers.binance.normalise import rest_agg_trade, rest_kline, rest_trade

log = logging.getLogger(__name__)

PAGE: Final = 1000
WEIGHT_LIMIT: Final = 6000
INTERVAL_MS: Final = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
    "1M": 2_678_400_000,  # 31 days: an upper bound, used only to estimate progress
}  # fmt: skip


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ID: Final = 2**63 - 1

Rejected = list[tuple[Any, str]]


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds, in integers: ``timestamp() * 1000`` in floats is off by one for some
    microsecond times. Request parameters are always sent in milliseconds, whatever unit the
    answers come in."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class BinanceRestError(MarketDataError):
    """Binance refused a request; the message is Binance's own."""


class BinanceRest:
    """Every REST call of the producer: weight budget, 429/418, retries with backoff."""

    def __init__(
        self, client: RestClient, *, safety: float = 0.8, max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        self.client = client
        self.safety = safety
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.used_weight = 0
        self.waited_s = 0.0
        self.requests = 0  # sent, retries included

    def server_time(self) -> datetime:
        answer = self.call(self.client.time)
        try:
            return epoch_datetime(answer["serverTime"], "serverTime")
        except (TypeError, KeyError, InvalidRecord) as exc:
            raise BinanceRestError(f"Binance answered no server time: {exc}") from None

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        backoff = Backoff(initial=1.0, maximum=30.0)
        for attempt in range(1, self.max_attempts + 1):
            self._respect_weight()
            self.requests += 1
            try:
                answer = method(*args, **kwargs)
            except ClientError as exc:
                self._client_error(exc)
            except (RecursionError, KeyError, TypeError) as exc:
                # binance-connector parses the answer itself: JSON nested too deep, an error
                # answer without Binance's fields. Retrying will not make it readable.
                raise BinanceRestError(f"unreadable answer from Binance: {exc!r:.200}") from None
            except (ServerError, requests.RequestException) as exc:
                if attempt == self.max_attempts:
                    raise BinanceRestError(
                        f"Binance unreachable after {attempt} tries: {exc}"
                    ) from exc
                delay = backoff.next_delay()
                log.warning("Binance request failed (%s); retry in %.1fs", exc, delay)
                self._wait(delay)
            else:
                usage = answer.get("limit_usage", {}) if isinstance(answer, dict) else {}
                self.used_weight = int(usage.get("x-mbx-used-weight-1m", self.used_weight))
                data = answer.get("data", answer) if isinstance(answer, dict) else answer
                return _reparsed(data) if isinstance(data, str) else data
        raise BinanceRestError("unreachable")  # pragma: no cover - the loop returns or raises

    def _client_error(self, exc: ClientError) -> None:
        headers = exc.header or {}
        if exc.status_code == 429:
            wait = _seconds(headers.get("Retry-After"), 60)
            log.warning("Binance answered 429 (rate limit); waiting %.0fs as told", wait)
            self._wait(wait)
            return
        if exc.status_code == 418:
            seconds = _seconds(headers.get("Retry-After"), 0)
            until = datetime.now(UTC) + timedelta(seconds=seconds)
            raise BinanceRestError(
                f"Binance banned this IP (418) until {until:%Y-%m-%d %H:%M:%S} UTC"
            )
        raise BinanceRestError(f"Binance: {exc.error_message} (code {exc.error_code})")

    def _respect_weight(self) -> None:
        if self.used_weight >= WEIGHT_LIMIT * self.safety:
            wait = 60 - time.time() % 60 + 0.5
            log.warning("used weight %d of %d; waiting %.0fs for the next minute",
                        self.used_weight, WEIGHT_LIMIT, wait)  # fmt: skip
            self._wait(wait)
            self.used_weight = 0

    def _wait(self, seconds: float) -> None:
        self.waited_s += seconds
        self.sleep(seconds)


def _number_or_text(digits: str) -> int | str:
    # Python refuses to turn more than 4300 digits into an int: the row keeps them as text and
    # is refused alone by the normaliser, instead of the whole page.
    return int(digits) if len(digits) <= 40 else digits


def _reparsed(text: str) -> Any:
    """An answer binance-connector could not parse (it hands back the text): JSON with numbers
    Python will not read as ints is read with those numbers as text; anything else stays text
    (and is refused as no list of rows)."""
    try:
        return json.loads(text, parse_int=_number_or_text)
    except (ValueError, RecursionError):
        return text


def _seconds(header: str | None, default: float) -> float:
    """A ``Retry-After`` in seconds; Binance's default when it is missing or unreadable."""
    try:
        seconds = float(header) if header is not None else default
    except ValueError:
        return default
    return seconds if 0 <= seconds <= 3 * 86_400 else default  # a ban lasts 3 days at most


class KlinePager:
    def __init__(
        self, client: RestClient, symbol: str, interval: str, start: datetime, end: datetime | None,
        *, safety: float = 0.8, max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep, rest: BinanceRest | None = None,
    ) -> None:  # fmt: skip
        if interval not in INTERVAL_MS:
            raise BinanceRestError(f"unknown interval {interval!r}")
        # Pass ``rest`` to share one weight budget: Binance counts weight per IP, not per series.
        self.rest = rest or BinanceRest(
            client, safety=safety, max_attempts=max_attempts, sleep=sleep
        )
        self.client = client
        self.symbol = symbol.upper()
        self.interval = interval
        self.start = start
        self.end = end

    @property
    def used_weight(self) -> int:
        return self.rest.used_weight

    @property
    def waited_s(self) -> float:
        return self.rest.waited_s

    def expected_bars(self, server_time: datetime) -> int:
        end = min(self.end or server_time, server_time)
        return max(0, (to_ms(end) - to_ms(self.start)) // INTERVAL_MS[self.interval] + 1)

    def server_time(self) -> datetime:
        return self.rest.server_time()

    def pages(self, server_time: datetime) -> Iterator[tuple[list[Bar], Rejected]]:
        """Bars from ``start`` to ``end`` (or now), oldest first, a page at a time, with the rows
        that did not normalise and why. The next page starts a millisecond after the newest
        open time of this one, read by the kernel's epoch rule, so pages follow each other
        whether Binance answers in milliseconds or microseconds."""
        cursor = to_ms(self.start)
        end_ms = to_ms(self.end) if self.end else None
        while end_ms is None or cursor <= end_ms:
            rows = _rows(self.rest.call(
                self.client.klines, self.symbol, self.interval,
                startTime=cursor, endTime=end_ms, limit=PAGE,
            ))  # fmt: skip
            if not rows:
                return
            bars: list[Bar] = []
            rejected: Rejected = []
            newest: datetime | None = None
            for row in rows:
                try:
                    bars.append(rest_kline(self.symbol, self.interval, row, server_time))
                except InvalidRecord as exc:
                    rejected.append((row, str(exc)))
                opened = _open_time(row)
                if opened is not None and (newest is None or opened > newest):
                    newest = opened
            yield bars, rejected
            if len(rows) < PAGE:
                return
            if newest is None:
                raise BinanceRestError("a page of klines with no readable open time: cannot go on")
            cursor = max(cursor, to_ms(newest)) + 1


def _rows(answer: Any) -> list[Any]:
    if not isinstance(answer, list):
        raise BinanceRestError(f"Binance answered a {type(answer).__name__}, not a list of rows")
    return answer


def _open_time(row: Any) -> datetime | None:
    """The open time of a kline row, when it has a readable one (the page goes on from it even
    when the rest of the row is broken)."""
    value = row[0] if isinstance(row, list | tuple) and row else None
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, int) and value.bit_length() > 80:  # no unit reads it as a time
        return None
    try:
        return epoch_datetime(value, "timestamp")
    except InvalidRecord:
        return None


def _row_id(row: Any, key: str) -> int | None:
    value = row.get(key) if isinstance(row, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID:
        return value
    return None


def _by_id(
    rest: BinanceRest, method: Callable[..., Any], symbol: str, *, last_id: int, id_key: str,
    normalise: Callable[[str, Any, datetime], Tick], max_pages: int | None,
    since: datetime | None = None, until: datetime | None = None,
) -> Iterator[tuple[list[Tick], Rejected]]:  # fmt: skip
    """Pages of rows with ids after ``last_id``, ``fromId`` moving past the highest id seen;
    trades before ``since`` are left out, and the first page reaching past ``until`` is the
    last, without the trades beyond it (ids rise with time)."""
    from_id = last_id + 1
    for _ in itertools.count() if max_pages is None else range(max_pages):
        rows = _rows(rest.call(method, symbol, fromId=from_id, limit=PAGE))
        if not rows:
            return
        ticks, rejected, highest = normalised(rows, symbol, normalise, id_key)
        past = until is not None and any(tick.timestamp > until for tick in ticks)
        yield within(ticks, since, until), rejected
        if past or len(rows) < PAGE:
            return
        if highest is None or highest < from_id:
            raise BinanceRestError(f"a page with no readable id after {from_id}: cannot go on")
        from_id = highest + 1


def normalised(
    rows: list[Any], symbol: str, normalise: Callable[[str, Any, datetime], Tick], id_key: str
) -> tuple[list[Tick], Rejected, int | None]:
    """A page's trades, the rows that did not normalise with why, and the highest id read
    (also from rows that did not normalise: paging goes on past them)."""
    received_at = datetime.now(UTC)
    ticks: list[Tick] = []
    rejected: Rejected = []
    highest: int | None = None
    for row in rows:
        try:
            ticks.append(normalise(symbol, row, received_at))
        except InvalidRecord as exc:
            rejected.append((row, str(exc)))
        row_id = _row_id(row, id_key)
        if row_id is not None and (highest is None or row_id > highest):
            highest = row_id
    return ticks, rejected, highest


def within(ticks: list[Tick], since: datetime | None, until: datetime | None) -> list[Tick]:
    return [tick for tick in ticks if (since is None or tick.timestamp >= since)
            and (until is None or tick.timestamp <= until)]  # fmt: skip


def trades_after(
    rest: BinanceRest, symbol: str, last_id: int, *, max_pages: int | None = 20,
    since: datetime | None = None, until: datetime | None = None,
) -> Iterator[tuple[list[Tick], Rejected]]:  # fmt: skip
    """The trades after ``last_id`` (``GET /api/v3/historicalTrades``, weight 25 a page), a page
    at a time, up to ``max_pages`` pages (None: no bound) and ``until``; the caller counts what
    is left beyond them."""
    return _by_id(rest, rest.client.historical_trades, symbol, last_id=last_id, id_key="id",
                  normalise=rest_trade, max_pages=max_pages, since=since,
                  until=until)  # fmt: skip


def agg_trades_after(
    rest: BinanceRest, symbol: str, last_id: int, *, max_pages: int | None = 20,
    since: datetime | None = None, until: datetime | None = None,
) -> Iterator[tuple[list[Tick], Rejected]]:  # fmt: skip
    """The aggregate trades after aggregate id ``last_id`` (``GET /api/v3/aggTrades`` with
    ``fromId``), as :func:`trades_after`."""
    return _by_id(rest, rest.client.agg_trades, symbol, last_id=last_id, id_key="a",
                  normalise=rest_agg_trade, max_pages=max_pages, since=since,
                  until=until)  # fmt: skip
