"""The two record types of the pipeline, ``Tick`` and ``Bar``, and their validation.

Prices and sizes are ``Decimal`` so that an exchange's decimal strings survive unchanged from
the venue to the database. Every record is checked when it is built, whether by a producer or by
the codec, and a broken one raises :class:`InvalidRecord` naming the field.

Validation has two paths with one outcome. A record the codec decodes (through
:class:`RecordDecoder`) has had its types, text lengths, awareness of its times, side and trade
count checked by msgspec's constraints in C; its ``__post_init__`` does only what they cannot
express (whitespace-only text, UTC and the year range, the decimal limits, extras, a bar's
interval and range; JSON holds no lone surrogate, and a message with a NUL escape gets every
check). A record built any other way (a producer calling ``Tick(...)``,
``msgspec.structs.replace``) gets no constraint checks from msgspec, so its ``__post_init__``
checks everything. Both paths take fast branches for the usual values (ASCII text, UTC times,
short plain decimals, flat extras) and fall back to the full checks below, which raise the
error; ``tests/unit/marketdata/test_records_differential.py`` holds both paths to the checks
as they were before.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

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

TickKey = tuple[str, str, datetime, str, str]
BarKey = tuple[str, str, str, datetime, str]


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


# The constraints msgspec checks in C when it decodes (or converts) into a record. ``__init__``
# does not apply them, so built records check the same rules in ``__post_init__``.
_MAX_EXCHANGE: Final = MAX_TEXT["exchange"]
_MAX_SYMBOL: Final = MAX_TEXT["symbol"]
_MAX_SOURCE: Final = MAX_TEXT["source"]
_MAX_TRADE_ID: Final = MAX_TEXT["trade_id"]
_MAX_INTERVAL: Final = MAX_TEXT["interval"]
Exchange = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_EXCHANGE)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_SYMBOL)]
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_SOURCE)]
TradeId = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_TRADE_ID)]
# Not ``Meta(pattern=...)``: msgspec's pattern check costs ~420 ns a value, a set lookup ~50.
Interval = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_INTERVAL)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
TradeCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_EXTRAS_INT - 1)]

# A finite Decimal whose str has no exponent and at most this many characters holds at most 26
# digits, at most 24 after the point ("0." or "-" takes the rest) and is below 1e26: inside
# every decimal limit, without ``as_tuple()`` (~800 ns).
_PLAIN_CHARS: Final = 26
# A flat extras object of at most this many plain values is within the node and depth limits.
_FLAT_EXTRAS: Final = 64
_FLAT_KINDS: Final = frozenset((bool, float, type(None)))
_USUAL_INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
     "1M")
)  # fmt: skip


def _plain(value: Decimal) -> bool:
    text = str(value)
    return len(text) <= _PLAIN_CHARS and "E" not in text and value.is_finite()


def _plain_unsigned(value: Decimal) -> bool:
    text = str(value)
    return len(text) <= _PLAIN_CHARS and "E" not in text and text[0] != "-" and value.is_finite()


def _flat_json(value: dict[str, Any]) -> bool:
    """True when decoded JSON extras are a flat object of plain values inside every extras
    limit; False is no verdict (the caller runs the full check). JSON's keys are strings, its
    floats finite (msgspec refuses 1e400) and its text valid Unicode; NUL is the caller's."""
    if len(value) > _FLAT_EXTRAS:
        return False
    text = 0
    # Keys, then a lookup: cheaper than .items() here (~370 CPU instructions a record).
    for key in value:  # noqa: PLC0206
        text += len(key)
        item = value[key]
        kind = type(item)
        if kind in _FLAT_KINDS:
            continue
        if kind is str:
            text += len(item)
        elif kind is not int or not -MAX_EXTRAS_INT <= item < MAX_EXTRAS_INT:
            return False
    return text <= MAX_EXTRAS_TEXT


def _flat_extras(value: object) -> bool:
    """:func:`_flat_json` for extras a producer built: first what JSON would have guaranteed
    (string keys, finite floats, storable text), here for ASCII only (anything else goes to
    the full check)."""
    if type(value) is not dict or len(value) > _FLAT_EXTRAS:
        return False
    for key, item in value.items():
        kind = type(item)
        if (
            type(key) is not str or not _ascii_without_nul(key)
            or (kind is str and not _ascii_without_nul(item))
            or (kind is float and not math.isfinite(item))
        ):  # fmt: skip
            return False
    return _flat_json(value)


def _texts(record: msgspec.Struct, fields: tuple[str, ...]) -> None:
    for field in fields:
        _text(field, getattr(record, field))


def _bar_range(bar: Bar) -> None:
    if bar.high < bar.low:
        raise InvalidRecord("high", f"is below low ({bar.high} < {bar.low})")
    for name in ("open", "close"):
        value = getattr(bar, name)
        if not bar.low <= value <= bar.high:
            raise InvalidRecord(name, f"{value} is outside [low {bar.low}, high {bar.high}]")


_caller: Final = sys._getframe
_TICK_TEXT: Final = ("exchange", "symbol", "source", "trade_id")
_BAR_TEXT: Final = ("exchange", "symbol", "source", "interval")
_BAR_PRICES: Final = ("open", "high", "low", "close")


class Tick(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One trade, or one top-of-book quote (``side`` ``bid``/``ask``), at exchange event time."""

    exchange: Exchange
    symbol: Symbol
    timestamp: AwareTime
    source: Source
    trade_id: TradeId
    price: Decimal
    size: Decimal
    side: Side | None
    received_at: AwareTime
    extras: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass could loosen the field constraints the decode path relies on.
        raise TypeError("Tick cannot be subclassed")

    def __post_init__(self) -> None:
        if _caller(1).f_code is not _DECODING:
            _built_tick(self)
            return
        # Decoded by RecordDecoder from JSON without a NUL: msgspec's constraints have checked
        # types, lengths, awareness and side, and JSON holds no lone surrogate. Inline, as this
        # runs for every record every consumer reads; each rule falls back to its full check.
        if (
            self.exchange.isspace() or self.symbol.isspace() or self.source.isspace()
            or self.trade_id.isspace()
        ):  # fmt: skip
            _texts(self, _TICK_TEXT)
        at = self.timestamp
        if at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
            _utc(self, "timestamp", at)
        at = self.received_at
        if at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
            _utc(self, "received_at", at)
        text = str(self.price)
        if len(text) > _PLAIN_CHARS or "E" in text or not self.price.is_finite():
            _finite("price", self.price)
        text = str(self.size)
        if len(text) > _PLAIN_CHARS or "E" in text or text[0] == "-" or not self.size.is_finite():
            _non_negative("size", self.size)
        if self.extras is not None and not _flat_json(self.extras):
            _extras(self.extras)

    @property
    def key(self) -> TickKey:
        """The unique key: several trades can share one exchange, symbol and millisecond."""
        return (self.exchange, self.symbol, self.timestamp, self.source, self.trade_id)


def _built_tick(tick: Tick) -> None:
    """Every rule, for a tick that msgspec's constraints never saw."""
    exchange, symbol, source, trade_id = tick.exchange, tick.symbol, tick.source, tick.trade_id
    if not (
        type(exchange) is str and type(symbol) is str and type(source) is str
        and type(trade_id) is str
        and 0 < len(exchange) <= _MAX_EXCHANGE and 0 < len(symbol) <= _MAX_SYMBOL
        and 0 < len(source) <= _MAX_SOURCE and 0 < len(trade_id) <= _MAX_TRADE_ID
        and not (exchange.isspace() or symbol.isspace() or source.isspace()
                 or trade_id.isspace())
        and _ascii_without_nul(exchange + symbol + source + trade_id)
    ):  # fmt: skip
        _texts(tick, _TICK_TEXT)
    at = tick.timestamp
    if type(at) is not datetime or at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
        _utc(tick, "timestamp", at)
    at = tick.received_at
    if type(at) is not datetime or at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
        _utc(tick, "received_at", at)
    price, size = tick.price, tick.size
    if type(price) is not Decimal or not _plain(price):
        _finite("price", price)
    if type(size) is not Decimal or not _plain_unsigned(size):
        _non_negative("size", size)
    side = tick.side
    if side is not None and (type(side) is not str or side not in SIDES):
        raise InvalidRecord("side", f"must be buy, sell, bid, ask or null, got {side!r:.40}")
    extras = tick.extras
    if extras is not None and not _flat_extras(extras):
        _extras(extras)


def _ascii_without_nul(text: str) -> bool:
    return text.isascii() and "\x00" not in text


class Bar(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One OHLCV bar; ``timestamp`` is its open time; ``closed`` is false while it still moves."""

    exchange: Exchange
    symbol: Symbol
    interval: Interval
    timestamp: AwareTime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: TradeCount | None = None
    closed: bool
    source: Source
    # Volume-weighted average price, when the source gives it (derived bars do). Last, so that a
    # bar's field tuple stays its table row (sinks/writer.py BAR_COLUMNS).
    vwap: Decimal | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass could loosen the field constraints the decode path relies on.
        raise TypeError("Bar cannot be subclassed")

    def __post_init__(self) -> None:
        if _caller(1).f_code is not _DECODING:
            _built_bar(self)
            return
        # Decoded by RecordDecoder from JSON without a NUL (see Tick.__post_init__).
        if (
            self.exchange.isspace() or self.symbol.isspace() or self.source.isspace()
            or self.interval.isspace()
        ):  # fmt: skip
            _texts(self, _BAR_TEXT)
        if self.interval not in _USUAL_INTERVALS:
            _interval(self.interval)
        at = self.timestamp
        if at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
            _utc(self, "timestamp", at)
        _bar_values(self)

    @property
    def key(self) -> BarKey:
        """The unique key: a later version of the same bar replaces the earlier one. The source
        is part of it, so that a derived bar and a venue's own bar of one minute are both kept
        (each venue publishes one bar series under one source)."""
        return (self.exchange, self.symbol, self.interval, self.timestamp, self.source)


def _interval(interval: str) -> None:
    if interval not in _USUAL_INTERVALS and not _INTERVAL.fullmatch(interval):
        raise InvalidRecord(
            "interval", f"must look like 1s, 5m, 1h, 1d, 1w or 1M, got {interval!r}"
        )


def _bar_values(bar: Bar) -> None:
    """The decimals and the range of a bar whose decimals are all of type Decimal."""
    o, h, lo, c, v = str(bar.open), str(bar.high), str(bar.low), str(bar.close), str(bar.volume)
    joined = o + h + lo + c + v
    # Plain notation ("E"), finite ("NaN", "sNaN", "Infinity"), short and a volume not signed.
    if (
        "E" in joined or "N" in joined or "I" in joined or v[0] == "-"
        or len(o) > _PLAIN_CHARS or len(h) > _PLAIN_CHARS or len(lo) > _PLAIN_CHARS
        or len(c) > _PLAIN_CHARS or len(v) > _PLAIN_CHARS
    ):  # fmt: skip
        for name in _BAR_PRICES:
            _finite(name, getattr(bar, name))
        _non_negative("volume", bar.volume)
    # These four hold only if high >= low too.
    if not (bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high):
        _bar_range(bar)
    if bar.vwap is not None:
        _vwap(bar, bar.vwap)


def _vwap(bar: Bar, vwap: Decimal) -> None:
    """An average of prices the bar traded at lies within its range."""
    if type(vwap) is not Decimal or not _plain(vwap):
        _finite("vwap", vwap)
    if not bar.low <= vwap <= bar.high:
        raise InvalidRecord("vwap", f"{vwap} is outside [low {bar.low}, high {bar.high}]")


def _built_bar(bar: Bar) -> None:
    """Every rule, for a bar that msgspec's constraints never saw."""
    exchange, symbol, source, interval = bar.exchange, bar.symbol, bar.source, bar.interval
    if not (
        type(exchange) is str and type(symbol) is str and type(source) is str
        and type(interval) is str
        and 0 < len(exchange) <= _MAX_EXCHANGE and 0 < len(symbol) <= _MAX_SYMBOL
        and 0 < len(source) <= _MAX_SOURCE and 0 < len(interval) <= _MAX_INTERVAL
        and not (exchange.isspace() or symbol.isspace() or source.isspace()
                 or interval.isspace())
        and _ascii_without_nul(exchange + symbol + source + interval)
    ):  # fmt: skip
        _texts(bar, _BAR_TEXT)
    _interval(interval)
    at = bar.timestamp
    if type(at) is not datetime or at.tzinfo is not UTC or not EARLIEST <= at < LATEST:
        _utc(bar, "timestamp", at)
    if not (
        type(bar.open) is Decimal and type(bar.high) is Decimal and type(bar.low) is Decimal
        and type(bar.close) is Decimal and type(bar.volume) is Decimal
    ):  # fmt: skip
        for name in _BAR_PRICES:
            _finite(name, getattr(bar, name))
        _non_negative("volume", bar.volume)
    _bar_values(bar)
    trade_count = bar.trade_count
    if trade_count is not None and (
        type(trade_count) is not int or not 0 <= trade_count < MAX_EXTRAS_INT
    ):
        raise InvalidRecord(
            "trade_count",
            f"must be a non-negative integer below 2**63, got {trade_count!r:.40}",
        )
    if type(bar.closed) is not bool:
        raise InvalidRecord("closed", f"must be true or false, got {_type_name(bar.closed)}")


Record = Tick | Bar
_T = TypeVar("_T")


class RecordDecoder(Generic[_T]):
    """A strict JSON decoder of a type that holds ticks and bars, the one decode path on which
    records skip the checks msgspec's constraints have made.

    Records know they are decoded here by their caller's frame: msgspec calls ``__post_init__``
    from C, so the calling Python frame is :meth:`_decode_without_nul` only when the record came
    out of this decoder (strict, no hooks, the records' own constraints) from JSON without a
    NUL escape. Anything else, including code that runs inside a decode (a finaliser, a signal
    handler) and a message holding ``\\u0000``, has another frame and gets every check.
    """

    __slots__ = ("_decoder",)

    def __init__(self, kind: Any) -> None:
        self._decoder: msgspec.json.Decoder[_T] = msgspec.json.Decoder(kind)

    def decode(self, data: bytes) -> _T:
        # JSON carries a NUL only as the escape \u0000 (raw control characters are malformed):
        # a message with one is decoded from this frame, so its records get every check. Most
        # messages hold no backslash at all, which memchr finds out faster than the escape.
        if b"\\" in data and b"\\u0000" in data:
            return self._decoder.decode(data)
        return self._decode_without_nul(data)

    def _decode_without_nul(self, data: bytes) -> _T:
        return self._decoder.decode(data)


_DECODING: Final = RecordDecoder._decode_without_nul.__code__


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
