"""TWS wire messages to records: pure functions, no I/O.

The producer takes tick-by-tick and real-time-bar messages as the fields TWS sent (strings,
before ib_async turns prices into floats and replaces the exchange's epoch with the local
arrival time), so prices keep their decimal text and timestamps are the exchange's. Layouts are
those of TWS API server versions 157-178 (the range ib_async speaks):

* tick-by-tick (99): ``99, reqId, tickType, time, …`` with ``price, size, mask, exchange,
  specialConditions`` for Last (1) / AllLast (2) and ``bid, ask, bidSize, askSize, mask`` for
  BidAsk (3); ``time`` is epoch seconds.
* real-time bar (50): ``50, version, reqId, time, open, high, low, close, volume, wap, count``;
  ``time`` is the bar's open, epoch seconds; a bar arrives once, closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Side, Tick, derived_trade_id
from producers.ibkr.contracts import EXCHANGE

TICK_BY_TICK: Final = 99
REALTIME_BAR: Final = 50
# One source for IB's bars, real-time or historical (backfill and gap fill): a bar's key holds
# its source, so two would store one bar twice.
BARS: Final = "ibkr.bars"
TICK_TYPES: Final = {"1": "Last", "2": "AllLast", "3": "BidAsk"}
# ib_async's names for IB bar sizes, by the interval names the records use.
BAR_SIZES: Final = {
    "1s": "1 secs", "5s": "5 secs", "10s": "10 secs", "15s": "15 secs", "30s": "30 secs",
    "1m": "1 min", "2m": "2 mins", "3m": "3 mins", "5m": "5 mins", "10m": "10 mins",
    "15m": "15 mins", "20m": "20 mins", "30m": "30 mins", "1h": "1 hour", "2h": "2 hours",
    "3h": "3 hours", "4h": "4 hours", "8h": "8 hours", "1d": "1 day", "1w": "1 week",
    "1M": "1 month",
}  # fmt: skip


_INTEGER_TEXT_MAX: Final = 20  # digits of any integer TWS sends here (masks, counts)


def _decimal(field: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidRecord(field, f"not a number: {_shown(text)}") from None
    if not value.is_finite():
        raise InvalidRecord(field, f"must be a finite number, got {_shown(text)}")
    return value


def _integer(field: str, text: str) -> int:
    """An ASCII decimal integer, optionally negative; ``int()`` alone would take ``"٣"`` or
    ``" 3_0 "`` and choke on 5,000 digits."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _INTEGER_TEXT_MAX):
        raise InvalidRecord(field, f"must be an integer, got {_shown(text)}")
    return int(text)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:37]!r}... ({len(text)} characters)"


def _epoch(field: str, text: str) -> datetime:
    # TWS's times here are whole epoch seconds: the unit is fixed, not guessed.
    return epoch_datetime(_integer(field, text), field, unit="s")


# Server versions whose 99 and 50 layouts are known: ib_async 2.1's range. IB's decoders read
# both messages without any version test across it, so the counts below hold for all of it; a
# version outside it may have moved fields, and its frames are refused rather than guessed at.
LAYOUT_VERSIONS: Final = range(157, 179)
# Fields per frame, message id included: by tick type for 99, and for 50.
_FIELD_COUNTS: Final = {("99", "1"): 9, ("99", "2"): 9, ("99", "3"): 9, ("50", ""): 11}
_NAMES: Final = {"99": "a tick-by-tick message", "50": "a real-time bar"}


def check_layout(fields: Sequence[str], server_version: int) -> None:
    """Refuse a 99 or 50 frame whose field count is not the one of ``server_version``: a field
    added or moved by a newer TWS must be a dead letter, not a value read from the wrong place.
    A tick type this module does not know is left to :func:`tick_by_tick` to name."""
    message = fields[0] if fields else ""
    what = _NAMES.get(message, f"message {_shown(message)}")
    if server_version not in LAYOUT_VERSIONS:
        raise InvalidRecord("message", f"no known layout of {what} at server version"
                            f" {server_version} (known: {LAYOUT_VERSIONS.start}-"
                            f"{LAYOUT_VERSIONS.stop - 1})")  # fmt: skip
    kind = (fields[2] if len(fields) > 2 else "") if message == "99" else ""
    expected = _FIELD_COUNTS.get((message, kind))
    if expected is None:
        if message == "99":
            return
        raise InvalidRecord("message", f"{what} has no known layout")
    if len(fields) != expected:
        raise InvalidRecord("message", f"{what} at server version {server_version} has"
                            f" {expected} fields, got {len(fields)}")  # fmt: skip


HISTORICAL_DATA: Final = 17
# Below MIN_SERVER_VER_HISTORICAL_DATA_END (196, beyond ib_async 2.1's 178) a 17 frame is
# ``17, reqId, startDate, endDate, itemCount`` and 8 fields a bar (date, open, high, low, close,
# volume, wap, barCount), as IB's and ib_async's decoders read it; from 196 on the dates move to
# a 108 frame, and 90 (HISTORICAL_DATA_UPDATE) comes only with keepUpToDate, never asked for.
_HISTORY_HEAD: Final = 5
_HISTORY_BAR: Final = 8


def check_history_layout(fields: Sequence[str], server_version: int) -> None:
    """Refuse a historical-data (17) frame whose field count is not ``5 + 8 x itemCount`` at
    ``server_version``, or whose bar values ib_async could not read (it would raise inside its
    decoder and leave the request unanswered): a dead letter naming the counts, never bars read
    from the wrong place."""
    what = "historical data (17)"
    if server_version not in LAYOUT_VERSIONS:
        raise InvalidRecord("message", f"no known layout of {what} at server version"
                            f" {server_version} (known: {LAYOUT_VERSIONS.start}-"
                            f"{LAYOUT_VERSIONS.stop - 1})")  # fmt: skip
    if len(fields) < _HISTORY_HEAD:
        raise InvalidRecord("message", f"{what} at server version {server_version} needs at"
                            f" least {_HISTORY_HEAD} fields, got {len(fields)}")  # fmt: skip
    _integer("reqId", fields[1])
    count = _integer("itemCount", fields[_HISTORY_HEAD - 1])
    expected = _HISTORY_HEAD + _HISTORY_BAR * count
    if count < 0 or len(fields) != expected:
        raise InvalidRecord("message", f"{what} at server version {server_version} with"
                            f" {count} bars has {expected} fields, got {len(fields)}")  # fmt: skip
    for start in range(_HISTORY_HEAD, len(fields), _HISTORY_BAR):
        bar = fields[start : start + _HISTORY_BAR]
        for name, text in zip(("open", "high", "low", "close", "volume", "wap"), bar[1:7],
                              strict=True):  # fmt: skip
            _decimal(name, text)
        _integer("barCount", bar[7])


def _arity(fields: Sequence[str], count: int, what: str) -> None:
    if len(fields) != count:
        raise InvalidRecord("message", f"{what} needs {count} fields, got {len(fields)}")


class TickIds:
    """Deterministic ids for IB ticks, which carry none.

    IB stamps ticks to the second, so one second can hold several identical trades (same price,
    size and venue); the n-th repeat within a second gets ``n`` in its id, which keeps them
    apart and gives a replay of the same sequence the same ids.
    """

    def __init__(self) -> None:
        self._second: dict[str, str] = {}
        self._seen: dict[str, dict[tuple[str, ...], int]] = {}

    def next(self, symbol: str, time: str, payload: tuple[str, ...]) -> str:
        if self._second.get(symbol) != time:
            self._second[symbol] = time
            self._seen[symbol] = {}
        seen = self._seen[symbol]
        occurrence = seen.get(payload, 0)
        seen[payload] = occurrence + 1
        return derived_trade_id(symbol, time, *payload, occurrence)


def tick_by_tick(
    fields: Sequence[str], symbol: str, received_at: datetime, ids: TickIds
) -> list[Tick]:
    """One tick-by-tick message → one trade tick, or a bid and an ask tick."""
    if len(fields) < 4:
        raise InvalidRecord("message", f"tick-by-tick needs at least 4 fields, got {len(fields)}")
    kind = TICK_TYPES.get(fields[2])
    if kind is None:
        raise InvalidRecord("tickType", f"unsupported tick-by-tick type {fields[2]!r}")
    time = fields[3]
    timestamp = _epoch("timestamp", time)
    source = f"ibkr.{kind}"
    if kind == "BidAsk":
        _arity(fields, 9, "a BidAsk tick")
        bid, ask, bid_size, ask_size, mask = fields[4:9]
        trade_id = ids.next(symbol, time, ("BidAsk", bid, ask, bid_size, ask_size))
        flags = _flags(mask, _BID_ASK_FLAGS) or None
        sides: tuple[tuple[Side, str, str], ...] = (("bid", bid, bid_size), ("ask", ask, ask_size))
        return [
            Tick(exchange=EXCHANGE, symbol=symbol, timestamp=timestamp, source=source,
                 trade_id=trade_id, price=_decimal(side, price),
                 size=_decimal(f"{side}_size", size), side=side, received_at=received_at,
                 extras=flags)
            for side, price, size in sides
        ]  # fmt: skip
    _arity(fields, 9, f"a {kind} tick")
    price, size, mask, venue, conditions = fields[4:9]
    extras = {"venue": venue, **_flags(mask, _LAST_FLAGS)}
    if conditions:
        extras["conditions"] = conditions
    return [
        Tick(exchange=EXCHANGE, symbol=symbol, timestamp=timestamp, source=source,
             trade_id=ids.next(symbol, time, (price, size, venue, conditions, mask)),
             price=_decimal("price", price), size=_decimal("size", size), side=None,
             received_at=received_at, extras=extras)
    ]  # fmt: skip


_LAST_FLAGS: Final = (("past_limit", 1), ("unreported", 2))
_BID_ASK_FLAGS: Final = (("bid_past_low", 1), ("ask_past_high", 2))


def _flags(mask: str, names: tuple[tuple[str, int], ...]) -> dict[str, object]:
    bits = _integer("mask", mask)
    if bits < 0:
        raise InvalidRecord("mask", f"must not be negative, got {mask!r}")
    return {name: True for name, bit in names if bits & bit}


def realtime_bar(fields: Sequence[str], symbol: str) -> Bar:
    """One 5-second real-time bar message → a closed ``5s`` bar."""
    _arity(fields, 11, "a real-time bar")
    count = _integer("trade_count", fields[10])
    return Bar(
        exchange=EXCHANGE, symbol=symbol, interval="5s", timestamp=_epoch("timestamp", fields[3]),
        open=_decimal("open", fields[4]), high=_decimal("high", fields[5]),
        low=_decimal("low", fields[6]), close=_decimal("close", fields[7]),
        volume=_decimal("volume", fields[8]), trade_count=count if count >= 0 else None,
        closed=True, source=BARS,
    )  # fmt: skip


def bar_open(when: datetime | date) -> datetime:
    """A ``reqHistoricalData`` bar's open time (``formatDate=2``: epoch times as UTC datetimes;
    daily and longer bars come as dates, taken as UTC midnight)."""
    if isinstance(when, datetime):
        return when
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def historical_bar(
    when: datetime | date, values: Sequence[float], symbol: str, interval: str, *, closed: bool
) -> Bar:
    """One bar of ``reqHistoricalData`` opening ``when`` (see :func:`bar_open`). ``values`` is
    open, high, low, close, volume, bar count as ib_async parsed them; -1 means IB does not
    know."""
    if len(values) != 6:
        raise InvalidRecord("message", f"a historical bar needs 6 values, got {len(values)}")
    open_, high, low, close, volume = (
        _float(name, value) for name, value in zip(_OHLCV, values[:5], strict=True)
    )
    count = values[5]
    if isinstance(count, bool) or not (
        isinstance(count, int) or (isinstance(count, float) and count.is_integer())
    ):
        raise InvalidRecord("trade_count", f"must be an integer, got {count!r}")
    if count >= 2**63:
        raise InvalidRecord("trade_count", "out of range: 2**63 or more")
    return Bar(
        exchange=EXCHANGE, symbol=symbol, interval=interval, timestamp=bar_open(when),
        open=open_, high=high, low=low, close=close, volume=max(volume, Decimal("0.0")),
        trade_count=int(count) if count >= 0 else None, closed=closed, source=BARS,
    )  # fmt: skip


_OHLCV: Final = ("open", "high", "low", "close", "volume")


def _float(field: str, value: float) -> Decimal:
    # repr is the shortest text that reads back as the same double: TWS's own decimal text.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(field, f"must be a number, got {type(value).__name__}")
    try:
        return _decimal(field, repr(float(value)))
    except OverflowError:
        raise InvalidRecord(field, "out of range") from None
