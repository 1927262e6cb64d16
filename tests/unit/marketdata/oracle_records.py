"""The record checks as they were before validation moved into the decoder: the oracle.

A verbatim copy of ``marketdata/records.py``'s checks at commit f032ddb (and of the decoder
``marketdata/codec.py`` built from them), plus a bar's optional ``vwap`` (checked as its
other decimals are, then against its range) added since, kept in tests only, so that the
differential tests can show that the new decode and the new construction accept exactly what
these accept and build equal records.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec

from marketdata.errors import InvalidRecord

Side = Literal["buy", "sell", "bid", "ask"]
SIDES: Final = frozenset(("buy", "sell", "bid", "ask"))

# Outside these bounds a timestamp is a unit mistake (ms read as s and the like), not market data.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)

# What storage holds, with room to spare. The key columns of both tables share one btree index
# entry, which PostgreSQL caps at 2,704 bytes: these lengths (in characters, at most 4 UTF-8
# bytes each) keep a tick's key under 1,930 bytes and a bar's under 720.
MAX_TEXT: Final = {
    "exchange": 32,
    "symbol": 128,
    "source": 64,
    "trade_id": 256,
    "interval": 16,
}
# Decimals: 38 significant digits is what a decimal128 (Parquet, Arrow) holds; the scale and
# magnitude limits keep every value far inside PostgreSQL's numeric and psycopg's binary format.
MAX_DIGITS: Final = 38
MAX_SCALE: Final = 24
MAX_ADJUSTED: Final = 29  # |value| < 1e30
# Extras are free-form venue fields stored as jsonb: bounded so that one record stays small.
MAX_EXTRAS_DEPTH: Final = 8
MAX_EXTRAS_NODES: Final = 1000
MAX_EXTRAS_TEXT: Final = 16384
MAX_EXTRAS_INT: Final = 2**63

_INTERVAL = re.compile(r"[1-9][0-9]{0,5}[smhdwM]")
_ZERO = Decimal(0)


def _type_name(value: object) -> str:
    return type(value).__name__


def _text(field: str, value: object) -> None:
    if type(value) is not str:
        raise InvalidRecord(field, f"must be a string, got {_type_name(value)}")
    if len(value) > MAX_TEXT[field]:
        raise InvalidRecord(field, f"longer than {MAX_TEXT[field]} characters ({len(value)})")
    if not value or value.isspace():
        raise InvalidRecord(field, "must be a non-empty string")
    _storable(field, value)


def _storable(field: str, value: str) -> None:
    """PostgreSQL's text and jsonb hold neither NUL nor text that is not valid UTF-8."""
    if value.isascii():
        if "\x00" in value:
            raise InvalidRecord(field, "must not contain NUL characters")
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidRecord(field, "must be valid Unicode (it holds a lone surrogate)") from None


def _extras(value: object) -> None:
    """Check free-form extras without recursion, so no nesting can exhaust the stack."""
    if type(value) is not dict:
        raise InvalidRecord("extras", f"must be an object, got {_type_name(value)}")
    nodes, text = 0, 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_EXTRAS_NODES:
            raise InvalidRecord("extras", f"more than {MAX_EXTRAS_NODES} values")
        if isinstance(item, dict | list):
            if depth > MAX_EXTRAS_DEPTH:
                raise InvalidRecord("extras", f"nested deeper than {MAX_EXTRAS_DEPTH} levels")
            for key, child in item.items() if isinstance(item, dict) else enumerate(item):
                if type(key) is str:
                    stack.append((key, depth + 1))
                elif isinstance(item, dict):
                    raise InvalidRecord("extras", f"keys must be strings, got {key!r:.40}")
                stack.append((child, depth + 1))
        elif type(item) is str:
            text += len(item)
            if text > MAX_EXTRAS_TEXT:
                raise InvalidRecord("extras", f"more than {MAX_EXTRAS_TEXT} characters of text")
            _storable("extras", item)
        else:
            _scalar(item)


def _scalar(item: object) -> None:
    kind = type(item)
    if kind is int:
        if not -MAX_EXTRAS_INT <= item < MAX_EXTRAS_INT:  # type: ignore[operator]
            raise InvalidRecord("extras", "integers must lie within ±2**63")
    elif kind is float:
        if not math.isfinite(item):  # type: ignore[arg-type]
            raise InvalidRecord("extras", f"numbers must be finite, got {item}")
    elif item is not None and kind is not bool:
        raise InvalidRecord("extras", f"cannot hold a {kind.__name__}")


def _timestamp(field: str, value: object) -> datetime:
    """Check an aware, in-range timestamp and return it in UTC (cheap on the usual UTC path)."""
    if not isinstance(value, datetime):
        raise InvalidRecord(field, f"must be a datetime, got {_type_name(value)}")
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise InvalidRecord(field, "must be timezone-aware (UTC); got a naive datetime")
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise InvalidRecord(field, f"out of range [{EARLIEST.year}, {LATEST.year})") from None
    if not EARLIEST.year <= value.year < LATEST.year:
        raise InvalidRecord(field, f"out of range [{EARLIEST.year}, {LATEST.year}): {value}")
    return value


def _finite(field: str, value: object) -> None:
    if type(value) is not Decimal:
        raise InvalidRecord(field, f"must be a Decimal, got {_type_name(value)}")
    if not value.is_finite():
        raise InvalidRecord(field, f"must be a finite number, got {value}")
    _, digits, exponent = value.as_tuple()
    if len(digits) > MAX_DIGITS:
        raise InvalidRecord(field, f"more than {MAX_DIGITS} significant digits ({len(digits)})")
    if -exponent > MAX_SCALE:  # type: ignore[operator]
        raise InvalidRecord(field, f"more than {MAX_SCALE} digits after the point")
    if value and value.adjusted() > MAX_ADJUSTED:
        raise InvalidRecord(field, f"magnitude must be below 1e{MAX_ADJUSTED + 1}, got {value:.3e}")


def _non_negative(field: str, value: object) -> None:
    _finite(field, value)
    if value < _ZERO:  # type: ignore[operator]
        raise InvalidRecord(field, f"must not be negative, got {value}")


def _utc(record: msgspec.Struct, field: str, value: object) -> None:
    utc = _timestamp(field, value)
    if utc is not value:
        msgspec.structs.force_setattr(record, field, utc)


class OracleTick(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One trade, or one top-of-book quote (``side`` ``bid``/``ask``), at exchange event time."""

    exchange: str
    symbol: str
    timestamp: datetime
    source: str
    trade_id: str
    price: Decimal
    size: Decimal
    side: Side | None
    received_at: datetime
    extras: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _text("exchange", self.exchange)
        _text("symbol", self.symbol)
        _text("source", self.source)
        _text("trade_id", self.trade_id)
        _utc(self, "timestamp", self.timestamp)
        _utc(self, "received_at", self.received_at)
        _finite("price", self.price)
        _non_negative("size", self.size)
        if self.side is not None and (type(self.side) is not str or self.side not in SIDES):
            raise InvalidRecord(
                "side", f"must be buy, sell, bid, ask or null, got {self.side!r:.40}"
            )
        if self.extras is not None:
            _extras(self.extras)


class OracleBar(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One OHLCV bar; ``timestamp`` is its open time; ``closed`` is false while it still moves."""

    exchange: str
    symbol: str
    interval: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int | None = None
    closed: bool
    source: str
    # Added with the bar key's source (after f032ddb): the other decimals' checks, then the range.
    vwap: Decimal | None = None

    def __post_init__(self) -> None:
        _text("exchange", self.exchange)
        _text("symbol", self.symbol)
        _text("source", self.source)
        _text("interval", self.interval)
        if not _INTERVAL.fullmatch(self.interval):
            raise InvalidRecord(
                "interval", f"must look like 1s, 5m, 1h, 1d, 1w or 1M, got {self.interval!r}"
            )
        _utc(self, "timestamp", self.timestamp)
        for name in ("open", "high", "low", "close"):
            _finite(name, getattr(self, name))
        _non_negative("volume", self.volume)
        if self.high < self.low:
            raise InvalidRecord("high", f"is below low ({self.high} < {self.low})")
        for name in ("open", "close"):
            value = getattr(self, name)
            if not self.low <= value <= self.high:
                raise InvalidRecord(name, f"{value} is outside [low {self.low}, high {self.high}]")
        if self.vwap is not None:
            _finite("vwap", self.vwap)
            if not self.low <= self.vwap <= self.high:
                raise InvalidRecord(
                    "vwap", f"{self.vwap} is outside [low {self.low}, high {self.high}]"
                )
        if self.trade_count is not None and (
            type(self.trade_count) is not int or not 0 <= self.trade_count < MAX_EXTRAS_INT
        ):
            raise InvalidRecord(
                "trade_count",
                f"must be a non-negative integer below 2**63, got {self.trade_count!r:.40}",
            )
        if type(self.closed) is not bool:
            raise InvalidRecord("closed", f"must be true or false, got {_type_name(self.closed)}")


class OracleTickBatch(msgspec.Struct, frozen=True, tag="ticks", tag_field="kind"):
    v: int
    records: list[OracleTick]


class OracleBarBatch(msgspec.Struct, frozen=True, tag="bars", tag_field="kind"):
    v: int
    records: list[OracleBar]


oracle_decoder: Final = msgspec.json.Decoder(OracleTickBatch | OracleBarBatch)
