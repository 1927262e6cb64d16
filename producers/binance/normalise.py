"""Binance payloads to records: pure functions, no I/O.

Each takes one decoded payload (a stream event, or a REST row) and the time it was received,
and returns records, or raises :class:`InvalidRecord` naming what is wrong, whatever the payload
holds: a frame is data from the network, so no shape of it may raise anything else. Formats
are Binance's spot API as documented (https://developers.binance.com/docs/binance-spot-api-docs).
Times may come in milliseconds (the default) or microseconds (``timeUnit=MICROSECOND`` on a
stream, ``X-MBX-TIME-UNIT: MICROSECOND`` on REST, the public dumps since 2025): the kernel's one
rule (:func:`marketdata.epoch.epoch_datetime`) tells them apart by magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Side, Tick

EXCHANGE: Final = "BINANCE"
# The one source of Binance's bars, streamed, fetched or imported: a bar's key holds its source.
KLINES: Final = "binance.kline"
INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
     "1M")
)  # fmt: skip
# Binance's ids are signed 64-bit longs; a larger number is no id and would not fit the extras.
_MAX_ID: Final = 2**63 - 1
# The longest decimal string Binance sends is ~20 characters; parsing megabytes of digits costs.
_MAX_DECIMAL_TEXT: Final = 64
_MAX_SYMBOL: Final = 128

# When a quote was first seen, given (symbol, update id) and this copy's arrival.
QuoteClock = Callable[[str, int, datetime], datetime]


def _describe(value: Any) -> str:
    """A short description of any value for an error message: ``repr`` of a deeply nested list
    recurses without bound and ``str`` of an int of over 4300 digits raises."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        return str(value) if bits <= 64 else f"an integer of {bits} bits"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}… ({len(value)} characters)"
    return f"a {type(value).__name__}"


def _time(field: str, value: Any) -> datetime:
    # epoch_datetime decides the unit; ints far beyond any unit are refused here first, since
    # its own message would print all their digits.
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 80:
        raise InvalidRecord(field, f"must be an epoch time, got {_describe(value)}")
    return epoch_datetime(value, field)


def _decimal(field: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a decimal string, got {_describe(value)}")
    if len(value) > _MAX_DECIMAL_TEXT:
        raise InvalidRecord(field, f"too long for a decimal: {_describe(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise InvalidRecord(field, f"not a number: {_describe(value)}") from None
    if not number.is_finite():
        raise InvalidRecord(field, f"must be a finite number, got {_describe(value)}")
    return number


def _id(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_ID:
        raise InvalidRecord(field, f"must be a Binance id (0 … 2**63-1), got {_describe(value)}")
    return value


def _count(field: str, value: Any) -> int:
    """A count: an int, or the digits of one (the dumps are CSV)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return _id(field, value)


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord(field, f"must be true or false, got {_describe(value)}")
    return value


def _symbol(value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_SYMBOL:
        raise InvalidRecord("symbol", f"must be a symbol, got {_describe(value)}")
    return value


def _interval(value: Any) -> str:
    if not isinstance(value, str) or value not in INTERVALS:
        raise InvalidRecord("interval", f"not a Binance interval: {_describe(value)}")
    return value


def _object(value: Any, field: str = "payload") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRecord(field, f"must be an object, got {_describe(value)}")
    return value


def _get(payload: Mapping[str, Any], key: str, field: str) -> Any:
    try:
        return payload[key]
    except KeyError:
        raise InvalidRecord(field, f"missing (Binance key {key!r})") from None


def _taker_trade(
    payload: Any, received_at: datetime, *, symbol: Any, source: str, keys: Mapping[str, str],
    extras: Mapping[str, str], exchange: str = EXCHANGE,
) -> Tick:  # fmt: skip
    """A trade; ``keys`` maps id, time, price, size and maker to the payload's keys, ``extras``
    record extras to Binance keys of ids or times (checked, kept as sent). Buyer-is-maker means
    the seller was the aggressor."""
    payload = _object(payload)
    maker = _flag("side", _get(payload, keys["maker"], "side"))
    kept: dict[str, Any] = {"buyer_maker": maker}
    for name, key in extras.items():
        value = _get(payload, key, name)
        if name.endswith("_time"):
            _time(name, value)
        else:
            _id(name, value)
        kept[name] = value
    return Tick(
        exchange=exchange,
        symbol=_symbol(symbol),
        timestamp=_time("timestamp", _get(payload, keys["time"], "timestamp")),
        source=source,
        trade_id=str(_id("trade_id", _get(payload, keys["id"], "trade_id"))),
        price=_decimal("price", _get(payload, keys["price"], "price")),
        size=_decimal("size", _get(payload, keys["size"], "size")),
        side="sell" if maker else "buy",
        received_at=received_at,
        extras=kept,
    )


_STREAM_KEYS: Final = {"id": "t", "time": "T", "price": "p", "size": "q", "maker": "m"}
_AGG_KEYS: Final = {**_STREAM_KEYS, "id": "a"}
_AGG_IDS: Final = {"first_trade_id": "f", "last_trade_id": "l"}


def _stream_symbol(payload: Any) -> Any:
    return _get(_object(payload), "s", "symbol")


def trade(payload: Mapping[str, Any], received_at: datetime) -> Tick:
    """``<symbol>@trade``: one trade; its event time ``E`` is kept in the extras."""
    return _taker_trade(payload, received_at, symbol=_stream_symbol(payload),
                        source="binance.trade", keys=_STREAM_KEYS,
                        extras={"event_time": "E"})  # fmt: skip


def agg_trade(payload: Mapping[str, Any], received_at: datetime) -> Tick:
    """``<symbol>@aggTrade``: trades of one taker order at one price, aggregated."""
    return _taker_trade(payload, received_at, symbol=_stream_symbol(payload),
                        source="binance.aggTrade", keys=_AGG_KEYS, extras=_AGG_IDS)  # fmt: skip


_QUOTE_SIDES: Final[tuple[tuple[Side, str, str], ...]] = (("bid", "b", "B"), ("ask", "a", "A"))


def book_ticker(
    payload: Mapping[str, Any], received_at: datetime, clock: QuoteClock | None = None,
    exchange: str = EXCHANGE,
) -> list[Tick]:  # fmt: skip
    """``<symbol>@bookTicker``: best bid and ask, identified by the order-book update id ``u``
    and the side. The spot stream carries no event time, so the quotes are stamped by
    ``clock(symbol, u, received_at)``: the live producer's clock gives every copy of one update
    the time its first copy arrived, so that copies from overlapping connections have one key.
    Without a clock, the arrival of this copy. A payload with a transaction time ``T`` (the
    futures format) is stamped with it."""
    payload = _object(payload)
    update = _id("trade_id", _get(payload, "u", "trade_id"))
    symbol = _symbol(_get(payload, "s", "symbol"))
    if "T" in payload:
        timestamp = _time("timestamp", payload["T"])
    else:
        timestamp = clock(symbol, update, received_at) if clock else received_at
    return [
        Tick(
            exchange=exchange,
            symbol=symbol,
            timestamp=timestamp,
            source="binance.bookTicker",
            trade_id=f"{update}:{side}",
            price=_decimal("price", _get(payload, price_key, "price")),
            size=_decimal("size", _get(payload, size_key, "size")),
            side=side,
            received_at=received_at,
        )
        for side, price_key, size_key in _QUOTE_SIDES
    ]


def kline(payload: Mapping[str, Any], received_at: datetime) -> Bar:
    """``<symbol>@kline_<interval>``: the bar so far; ``x`` says whether it has closed."""
    k = _object(_get(_object(payload), "k", "kline"), "kline")
    return Bar(
        exchange=EXCHANGE,
        symbol=_symbol(_get(k, "s", "symbol")),
        interval=_interval(_get(k, "i", "interval")),
        timestamp=_time("timestamp", _get(k, "t", "timestamp")),
        open=_decimal("open", _get(k, "o", "open")),
        high=_decimal("high", _get(k, "h", "high")),
        low=_decimal("low", _get(k, "l", "low")),
        close=_decimal("close", _get(k, "c", "close")),
        volume=_decimal("volume", _get(k, "v", "volume")),
        trade_count=_count("trade_count", _get(k, "n", "trade_count")),
        closed=_flag("closed", _get(k, "x", "closed")),
        source=KLINES,
    )


def rest_kline(
    symbol: str, interval: str, row: Sequence[Any], server_time: datetime,
    exchange: str = EXCHANGE,
) -> Bar:  # fmt: skip
    """One row of ``GET /api/v3/klines`` (or of a klines dump): ``[open time, open, high, low,
    close, volume, close time, quote volume, trades, ...]``; closed once its close time has
    passed. ``exchange``: ``BINANCE-UM``/``BINANCE-CM`` for futures rows (the same columns)."""
    if not isinstance(row, list | tuple) or len(row) < 9:
        raise InvalidRecord("kline", f"must be a kline row of 9+ fields, got {_describe(row)}")
    close_time = _time("close_time", row[6])
    return Bar(
        exchange=exchange,
        symbol=_symbol(symbol),
        interval=_interval(interval),
        timestamp=_time("timestamp", row[0]),
        open=_decimal("open", row[1]),
        high=_decimal("high", row[2]),
        low=_decimal("low", row[3]),
        close=_decimal("close", row[4]),
        volume=_decimal("volume", row[5]),
        trade_count=_count("trade_count", row[8]),
        closed=close_time < server_time,
        source=KLINES,
    )


_HISTORICAL_KEYS: Final = {"id": "id", "time": "time", "price": "price", "size": "qty",
                           "maker": "isBuyerMaker"}  # fmt: skip


def rest_trade(
    symbol: str, row: Mapping[str, Any], received_at: datetime, exchange: str = EXCHANGE
) -> Tick:
    """One trade of ``GET /api/v3/historicalTrades``, the same record as its ``@trade`` event
    (same source and id), so that a trade fetched again after a gap deduplicates."""
    return _taker_trade(row, received_at, symbol=symbol, source="binance.trade",
                        keys=_HISTORICAL_KEYS, extras={}, exchange=exchange)  # fmt: skip


def rest_agg_trade(
    symbol: str, row: Mapping[str, Any], received_at: datetime, exchange: str = EXCHANGE
) -> Tick:
    """One row of ``GET /api/v3/aggTrades`` (the stream's keys, without ``s`` and ``E``), the
    same record as its ``@aggTrade`` event, so that one fetched again after a gap
    deduplicates."""
    return _taker_trade(row, received_at, symbol=symbol, source="binance.aggTrade",
                        keys=_AGG_KEYS, extras=_AGG_IDS, exchange=exchange)  # fmt: skip


def stream_event(
    message: Any, received_at: datetime, clock: QuoteClock | None = None
) -> list[Tick] | list[Bar] | None:
    """One WebSocket message (plain or combined ``{"stream", "data"}``) to records; None for
    messages that carry no market data (subscription replies)."""
    data = message.get("data", message) if isinstance(message, Mapping) else message
    data = _object(data)
    if "result" in data and "id" in data:
        return None
    event = data.get("e")
    if event == "trade":
        return [trade(data, received_at)]
    if event == "aggTrade":
        return [agg_trade(data, received_at)]
    if event == "kline":
        return [kline(data, received_at)]
    if event is None and {"u", "b", "a"} <= data.keys():
        return book_ticker(data, received_at, clock)
    raise InvalidRecord("payload", f"unknown Binance event {_describe(event)}")
