"""Epoch numbers to UTC datetimes: the one rule that decides the unit, used by every venue.

Venues send epoch times in seconds, milliseconds, microseconds or nanoseconds, and some switch
(Binance's public dumps went from milliseconds to microseconds on 2025-01-01). Every record
time lies within [1970, 2100), and in that range the four units never overlap, so the
magnitude decides the unit:

==========================  ============  =====================================
absolute value below        unit          a time in [1970, 2100) is
==========================  ============  =====================================
``1e11``                    seconds       below 4.11e9
``1e14``                    milliseconds  4.11e9 … 4.11e12 (from 1970-02-17 on)
``1e17``                    microseconds  4.11e12 … 4.11e15 (from 1970-02-17 on)
``1e20``                    nanoseconds   4.11e15 … 4.11e18 (from 1970-02-17 on)
==========================  ============  =====================================

So a millisecond time before 1973-03-03 (below 1e11) would be read as seconds: no market data
of this pipeline is that old. The range is checked on integers, before any datetime is built,
so no input can raise ``OverflowError`` or ``ValueError`` from :mod:`datetime`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from marketdata.errors import InvalidRecord

Unit = Literal["s", "ms", "us", "ns"]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# [EARLIEST, LATEST) as microseconds since the epoch; records.py checks datetimes against the same.
EARLIEST_US: Final = 0
LATEST_US: Final = 4_102_444_800 * 1_000_000  # 2100-01-01T00:00:00Z

_PER_SECOND: Final[dict[Unit, int]] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# Upper bounds (exclusive) of each unit's magnitude, in the order they are tried.
_THRESHOLDS: Final[tuple[tuple[int, Unit], ...]] = (
    (10**11, "s"),
    (10**14, "ms"),
    (10**17, "us"),
    (10**20, "ns"),
)
_NUMBER_TEXT_MAX: Final = 40  # a numeric string longer than this is no epoch time
_TOO_LARGE_DIGITS: Final = 25  # far past any unit's range, whatever the unit
_TOO_LARGE: Final = 10**_TOO_LARGE_DIGITS


def epoch_unit(value: int | Decimal, field: str = "timestamp") -> Unit:
    """The unit of an epoch number by the magnitude rule; ``InvalidRecord`` when it is none."""
    magnitude: int | Decimal = -value if value < 0 else value
    for bound, unit in _THRESHOLDS:
        if magnitude < bound:
            return unit
    raise InvalidRecord(field, f"epoch number too large for any unit: {value}")


def _number(field: str, value: object) -> int | Decimal:
    """An exact number from an int, a finite float, a Decimal or a numeric string."""
    if isinstance(value, bool):
        raise InvalidRecord(field, f"must be an epoch number, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecord(field, f"must be a finite epoch number, got {value!r}")
        # A whole double is the integer it holds, exactly (DTC sends whole seconds as doubles).
        value = int(value) if value.is_integer() else Decimal(repr(value))
    if isinstance(value, int):
        if not -_TOO_LARGE < value < _TOO_LARGE:
            digits = int(value.bit_length() * math.log10(2)) + 1
            raise InvalidRecord(field, f"epoch number out of range: about {digits} digits")
        return value
    if isinstance(value, str):
        if len(value) > _NUMBER_TEXT_MAX:
            raise InvalidRecord(field, f"must be an epoch number, got {len(value)} characters")
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidRecord(field, f"must be an epoch number, got {value!r}") from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidRecord(field, f"must be a finite epoch number, got {value}")
        if value.adjusted() >= _TOO_LARGE_DIGITS:  # don't multiply it out
            raise InvalidRecord(field, f"epoch number out of range: {value:.3e}")
        return int(value) if value == value.to_integral_value() else value
    raise InvalidRecord(field, f"must be an epoch number, got {type(value).__name__}")


def epoch_datetime(value: object, field: str = "timestamp", unit: Unit | None = None) -> datetime:
    """The UTC time of an epoch number, in ``unit`` or, when ``None``, the unit the magnitude
    rule gives; fractions below a microsecond are truncated. Anything that is not a number, or
    not a time in [1970, 2100), raises :class:`InvalidRecord` naming ``field``."""
    number = _number(field, value)
    chosen = unit or epoch_unit(number, field)
    per_second = _PER_SECOND[chosen]
    if isinstance(number, int):
        micros = number * 1_000_000 // per_second
    else:
        micros = int(number * 1_000_000 // per_second)  # Decimal // truncates: >= 0 here
    if not EARLIEST_US <= micros < LATEST_US:
        raise InvalidRecord(
            field, f"epoch {chosen} {number} is outside [1970-01-01, 2100-01-01) UTC"
        )
    return EPOCH + timedelta(microseconds=micros)
