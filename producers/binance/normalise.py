"""Binance payloads to records: pure functions, no I/O.

Each takes one decoded payload (a stream event, or a REST kline row) and the time it was
received, and returns records, or raises :class:`InvalidRecord` naming what is wrong. Formats
are Binance's spot API as documented (https://developers.binance.com/docs/binance-spot-api-docs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Side, Tick

EXCHANGE: Final = "BINANCE"
INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
     "1M")
)  # fmt: skip


def _ms(field: str, value: Any) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord(field, f"must be epoch milliseconds, got {value!r}")
    return datetime.fromtimestamp(value / 1000, UTC)


def _decimal(field: str, value: Any) -> Decimal:
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise InvalidRecord(field, f"not a number: {value!r}") from None


def _get(payload: Mapping[str, Any], key: str, field: str) -> Any:
    try:
        return payload[key]
    except KeyError:
        raise InvalidRecord(field, f"missing (Binance key {key!r})") from None
    except TypeError:
        raise InvalidRecord("payload", f"must be an object, got {type(payload).__name__}") from None


def _taker_trade(
    payload: Mapping[str, Any], received_at: datetime, source: str, id_key: str,
    extras: dict[str, str],
) -> Tick:  # fmt: skip
    """A trade event; ``m`` (buyer is maker) means the seller was the aggressor. ``extras`` maps
    record extras to Binance keys."""
    maker = _get(payload, "m", "side")
    return Tick(
        exchange=EXCHANGE,
        symbol=_get(payload, "s", "symbol"),
        timestamp=_ms("timestamp", _get(payload, "T", "timestamp")),
        source=source,
        trade_id=str(_get(payload, id_key, "trade_id")),
        price=_decimal("price", _get(payload, "p", "price")),
        size=_decimal("size", _get(payload, "q", "size")),
        side="sell" if maker is True else "buy",
        received_at=received_at,
        extras={"buyer_maker": maker, **{k: _get(payload, key, k) for k, key in extras.items()}},
    )


def trade(payload: Mapping[str, Any], received_at: datetime) -> Tick:
    """``<symbol>@trade``: one trade."""
    return _taker_trade(payload, received_at, "binance.trade", "t", {"event_time": "E"})


def agg_trade(payload: Mapping[str, Any], received_at: datetime) -> Tick:
    """``<symbol>@aggTrade``: trades of one taker order at one price, aggregated."""
    return _taker_trade(payload, received_at, "binance.aggTrade", "a",
                        {"first_trade_id": "f", "last_trade_id": "l"})  # fmt: skip


_QUOTE_SIDES: Final[tuple[tuple[Side, str, str], ...]] = (("bid", "b", "B"), ("ask", "a", "A"))


def book_ticker(payload: Mapping[str, Any], received_at: datetime) -> list[Tick]:
    """``<symbol>@bookTicker``: best bid and ask. The spot stream carries no event time, so the
    quotes are stamped with their arrival; the order-book update id ``u`` identifies them."""
    update = str(_get(payload, "u", "trade_id"))
    symbol = _get(payload, "s", "symbol")
    return [
        Tick(
            exchange=EXCHANGE,
            symbol=symbol,
            timestamp=received_at,
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
    k = _get(payload, "k", "kline")
    return Bar(
        exchange=EXCHANGE,
        symbol=_get(k, "s", "symbol"),
        interval=_interval(_get(k, "i", "interval")),
        timestamp=_ms("timestamp", _get(k, "t", "timestamp")),
        open=_decimal("open", _get(k, "o", "open")),
        high=_decimal("high", _get(k, "h", "high")),
        low=_decimal("low", _get(k, "l", "low")),
        close=_decimal("close", _get(k, "c", "close")),
        volume=_decimal("volume", _get(k, "v", "volume")),
        trade_count=_get(k, "n", "trade_count"),
        closed=_get(k, "x", "closed") is True,
        source="binance.kline",
    )


def rest_kline(symbol: str, interval: str, row: Sequence[Any], server_time: datetime) -> Bar:
    """One row of ``GET /api/v3/klines``: ``[open time, open, high, low, close, volume, close
    time, quote volume, trades, ...]``; closed once its close time has passed."""
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < 9:
        raise InvalidRecord("kline", f"must be a kline row of 9+ fields, got {row!r}")
    close_time = _ms("close_time", row[6])
    return Bar(
        exchange=EXCHANGE,
        symbol=symbol,
        interval=_interval(interval),
        timestamp=_ms("timestamp", row[0]),
        open=_decimal("open", row[1]),
        high=_decimal("high", row[2]),
        low=_decimal("low", row[3]),
        close=_decimal("close", row[4]),
        volume=_decimal("volume", row[5]),
        trade_count=row[8] if isinstance(row[8], int) else None,
        closed=close_time < server_time,
        source="binance.rest.klines",
    )


def rest_trade(symbol: str, row: Mapping[str, Any]) -> Tick:
    """One trade of ``GET /api/v3/historicalTrades``, the same record as its ``@trade`` event
    (same source and id), so that a trade fetched again after a gap deduplicates."""
    maker = _get(row, "isBuyerMaker", "side")
    return Tick(
        exchange=EXCHANGE,
        symbol=symbol,
        timestamp=_ms("timestamp", _get(row, "time", "timestamp")),
        source="binance.trade",
        trade_id=str(_get(row, "id", "trade_id")),
        price=_decimal("price", _get(row, "price", "price")),
        size=_decimal("size", _get(row, "qty", "size")),
        side="sell" if maker is True else "buy",
        received_at=datetime.now(UTC),
        extras={"buyer_maker": maker},
    )


def _interval(value: Any) -> str:
    if value not in INTERVALS:
        raise InvalidRecord("interval", f"not a Binance interval: {value!r}")
    return str(value)


def stream_event(
    message: Mapping[str, Any], received_at: datetime
) -> list[Tick] | list[Bar] | None:
    """One WebSocket message (plain or combined ``{"stream", "data"}``) to records; None for
    messages that carry no market data (subscription replies)."""
    data = message.get("data", message) if isinstance(message, Mapping) else message
    if not isinstance(data, Mapping):
        raise InvalidRecord("payload", f"must be an object, got {type(data).__name__}")
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
        return book_ticker(data, received_at)
    raise InvalidRecord("payload", f"unknown Binance event {event!r}")
