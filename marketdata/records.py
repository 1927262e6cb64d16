"""The two record types of the pipeline, ``Tick`` and ``Bar``, and their validation.

Prices and sizes are ``Decimal`` so that an exchange's decimal strings survive unchanged from
the venue to the database. Every record is checked when it is built, whether by a producer or by
the codec, and a broken one raises :class:`InvalidRecord` naming the field.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec

from marketdata.errors import InvalidRecord

Side = Literal["buy", "sell", "bid", "ask"]

# Outside these bounds a timestamp is a unit mistake (ms read as s and the like), not market data.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)

# Far beyond any market's range, and well inside what a PostgreSQL numeric column stores.
MAX_DIGITS: Final = 100
_INTERVAL = re.compile(r"[1-9][0-9]*[smhdwM]")
_ZERO = Decimal(0)

TickKey = tuple[str, str, datetime, str, str]
BarKey = tuple[str, str, str, datetime]


def _text(field: str, value: str) -> None:
    if not value or not value.strip():
        raise InvalidRecord(field, "must be a non-empty string")
    if "\x00" in value:
        raise InvalidRecord(field, "must not contain NUL characters")


def _no_nul(field: str, value: object) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL, so such a record could never be stored."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRecord(field, "must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(field, key)
            _no_nul(field, item)
    elif isinstance(value, list):
        for item in value:
            _no_nul(field, item)


def _timestamp(field: str, value: datetime) -> datetime:
    """Check an aware, in-range timestamp and return it in UTC (cheap on the usual UTC path)."""
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise InvalidRecord(field, "must be timezone-aware (UTC); got a naive datetime")
        value = value.astimezone(UTC)
    if not EARLIEST.year <= value.year < LATEST.year:
        raise InvalidRecord(field, f"out of range [{EARLIEST.year}, {LATEST.year}): {value}")
    return value


def _finite(field: str, value: Decimal) -> None:
    if not value.is_finite():
        raise InvalidRecord(field, f"must be a finite number, got {value}")
    if value and not -MAX_DIGITS <= value.adjusted() <= MAX_DIGITS:
        raise InvalidRecord(field, f"magnitude must lie within 1e±{MAX_DIGITS}, got {value}")


def _non_negative(field: str, value: Decimal) -> None:
    _finite(field, value)
    if value < _ZERO:
        raise InvalidRecord(field, f"must not be negative, got {value}")


def _utc(record: msgspec.Struct, field: str, value: datetime) -> None:
    utc = _timestamp(field, value)
    if utc is not value:
        msgspec.structs.force_setattr(record, field, utc)


class Tick(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
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
        if self.extras:
            _no_nul("extras", self.extras)

    @property
    def key(self) -> TickKey:
        """The unique key: several trades can share one exchange, symbol and millisecond."""
        return (self.exchange, self.symbol, self.timestamp, self.source, self.trade_id)


class Bar(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
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

    def __post_init__(self) -> None:
        _text("exchange", self.exchange)
        _text("symbol", self.symbol)
        _text("source", self.source)
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
        if self.trade_count is not None and self.trade_count < 0:
            raise InvalidRecord("trade_count", f"must not be negative, got {self.trade_count}")

    @property
    def key(self) -> BarKey:
        """The unique key: a later version of the same bar replaces the earlier one."""
        return (self.exchange, self.symbol, self.interval, self.timestamp)


Record = Tick | Bar


def derived_trade_id(*parts: object) -> str:
    """A deterministic trade id for a source that has none: the same payload, the same id.

    Callers pass the payload fields that identify the trade (not the arrival time), so a replay
    of the same trade after a reconnect gets the same id and is deduplicated.
    """
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\x1f")
    return "h:" + digest.hexdigest()
