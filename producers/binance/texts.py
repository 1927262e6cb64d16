"""The JSON text of dump rows' records, built a column at a time (for :mod:`columns`).

From a block's text columns, :class:`Formats` says which rows it vouches for and gives each
row's records as the very bytes :func:`marketdata.codec.encode_ticks` / ``encode_bars`` write for
the records the row path (:func:`producers.binance.dumps.normalise_row`) makes of it. What it
vouches for is a row of a strict shape (:meth:`Formats.pattern`: canonical ids and decimals,
times with the digits of the file's unit), times in [1970, 2100), decimals that
:class:`~decimal.Decimal` prints as written (not ``1E-7``) and, for bars, prices that provably
keep ``low <= open, close <= high``; the row path decides the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from marketdata.epoch import EPOCH, LATEST_US, Unit
from producers.binance.vision import DumpName

# A decimal as Decimal prints it: at most 20 + 18 digits (within 38 digits and scale 24).
_DECIMAL: Final = r"(0|[1-9][0-9]{0,19})(\.[0-9]{1,18})?"
# ... except below 1e-6, or zero with over six places, which Decimal prints as 1E-7, 0E-8.
_EXPONENT_FORM: Final = r"^0\.0{6}(0|[0-9]*[1-9])"
_TRUE: Final = pa.array(["True", "true"])
_BOOLEAN: Final = "(True|true|False|false)"
_ID: Final = "(0|[1-9][0-9]{0,17})"  # Binance's ids are signed 64-bit: below 2**63
_ANY: Final = "[^,]*"  # a field the row path does not read
# How many digits a time in each unit has (the kernel's magnitude rule: [1e11, 1e14) ms).
_TIME_DIGITS: Final[dict[Unit, tuple[int, int]]] = {"ms": (12, 14), "us": (15, 17)}
PER_US: Final[dict[Unit, int]] = {"ms": 1000, "us": 1}


def _json(value: str) -> str:
    return msgspec.json.encode(value).decode()


_Parts = list["pa.Array | str"]


class Formats:
    """The JSON text of each kind's records, from a block's columns."""

    def __init__(self, name: DumpName, unit: Unit, received_at: datetime) -> None:
        self.name = name
        self.unit = unit
        received_at = received_at.astimezone(UTC)  # as a record holds it
        self.received_us = (received_at - EPOCH) // timedelta(microseconds=1)
        self.received = msgspec.json.encode(received_at).decode()
        self.head = f'{{"exchange":{_json(name.exchange)},"symbol":{_json(name.symbol)},'

    def time(self, column: pa.Array, shaped: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Which of ``column``'s texts (the digits of a time in this file's unit where
        ``shaped``) are in [1970, 2100), and their microseconds (0 where not)."""
        micros = pc.multiply(pc.cast(_where(shaped, column), pa.int64()), PER_US[self.unit])
        return pc.and_(shaped, pc.less(micros, LATEST_US)), micros

    def pattern(self, width: int) -> str:
        """The shape of a row of ``width`` fields this path vouches for, as a regular
        expression over its line: canonical ids and decimals, times with the digits of the
        file's unit (the kernel's magnitude rule), booleans as the row path reads them. It
        stops at the comma after the last field it checks: the fields after it are ones the
        row path does not read, and that the line has ``width`` fields is pyarrow's to say
        (a line of another count is not one of the table's rows), so scanning them would
        only cost time (a kline's last three fields are a quarter of its line)."""
        low, high = _TIME_DIGITS[self.unit]
        time = f"[1-9][0-9]{{{low - 1},{high - 1}}}"
        fields = {
            "klines": [time, *[_DECIMAL] * 5, time, _ANY, _ID, _ANY, _ANY, _ANY],
            "trades": [_ID, _DECIMAL, _DECIMAL, _ANY, time, _BOOLEAN],
            "aggTrades": [_ID, _DECIMAL, _DECIMAL, _ID, _ID, time, _BOOLEAN],
            "bookTicker": [_ID, *[_DECIMAL] * 4, time, time],
        }[self.name.kind]
        fields += [_ANY] * (width - len(fields))  # spot's isBestMatch
        checked = len(fields)
        while fields[checked - 1] == _ANY:
            checked -= 1
        end = "," if checked < len(fields) else "\\r?\\n?$"
        return "^" + ",".join(fields[:checked]) + end

    def timestamp(self, micros: pa.Array) -> _Parts:
        """The RFC 3339 text msgspec writes (no fraction when the microseconds are 0), as
        two parts: seconds and fraction, each formatted once per distinct value (a second
        holds many trades; bars have a second each)."""
        seconds = pc.divide(micros, 1_000_000)
        fraction = pc.subtract(micros, pc.multiply(seconds, 1_000_000))
        if self.name.kind == "klines":
            text = pc.cast(pc.cast(seconds, pa.timestamp("s")), pa.string())
            text = pc.replace_substring(text, " ", "T", max_replacements=1)
        else:
            whole = pc.dictionary_encode(seconds)
            text = pc.cast(pc.cast(whole.dictionary, pa.timestamp("s")), pa.string())
            text = pc.take(pc.replace_substring(text, " ", "T", max_replacements=1), whole.indices)
        parts = pc.dictionary_encode(fraction)
        digits = pc.utf8_lpad(pc.cast(parts.dictionary, pa.string()), 6, "0")
        digits = pc.if_else(pc.equal(parts.dictionary, 0), "",
                            pc.binary_join_element_wise(".", digits, ""))  # fmt: skip
        if len(digits) == 1:  # one fraction for all (bars: none), a text joined once
            return [text, str(digits[0].as_py())]
        return [text, pc.take(digits, parts.indices)]

    def kind(self, columns: list[pa.Array], shaped: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Which rows (of those ``shaped`` as :meth:`pattern` says) are vouched for, and the
        JSON text of each row's records, each ending with a comma."""
        name = self.name.kind
        if name == "klines":
            return self._klines(columns, shaped)
        if name == "bookTicker":
            return self._book(columns, shaped)
        return self._trades(columns, shaped, agg=name == "aggTrades")

    def _trades(
        self, c: list[pa.Array], shaped: pa.Array, *, agg: bool
    ) -> tuple[pa.Array, pa.Array]:
        at = 5 if agg else 4
        ok, micros = self.time(c[at], shaped)
        ok = _all(ok, _plain(c[1]), _plain(c[2]))
        maker = pc.is_in(c[at + 1], value_set=_TRUE)
        source = "binance.aggTrade" if agg else "binance.trade"
        side = '","side":"{}","received_at":' + self.received + ',"extras":{{"buyer_maker":{}'
        parts: _Parts = [
            self.head + '"timestamp":"', *self.timestamp(micros),
            f'Z","source":"{source}","trade_id":"', c[0], '","price":"', c[1], '","size":"',
            c[2], pc.if_else(maker, side.format("sell", "true"), side.format("buy", "false")),
        ]  # fmt: skip
        if agg:
            parts += [',"first_trade_id":', c[3], ',"last_trade_id":', c[4]]
        return ok, _join([*parts, "}},"])

    def _book(self, c: list[pa.Array], shaped: pa.Array) -> tuple[pa.Array, pa.Array]:
        ok, micros = self.time(c[5], shaped)
        ok = _all(ok, *(_plain(c[i]) for i in range(1, 5)))
        stamp = self.timestamp(micros)
        parts: _Parts = []  # the ask's text follows the bid's in one row's text
        for side, price, size in (("bid", 1, 2), ("ask", 3, 4)):
            parts += [
                self.head + '"timestamp":"', *stamp, 'Z","source":"binance.bookTicker",'
                '"trade_id":"', c[0], f':{side}","price":"', c[price], '","size":"', c[size],
                f'","side":"{side}","received_at":{self.received}}},',
            ]  # fmt: skip
        return ok, _join(parts)

    def _klines(self, c: list[pa.Array], shaped: pa.Array) -> tuple[pa.Array, pa.Array]:
        ok, micros = self.time(c[0], shaped)
        closes_ok, closes = self.time(c[6], shaped)
        ok = _all(ok, closes_ok, *(_plain(c[i]) for i in range(1, 6)))
        opened, high, low, close = ((c[i], _float(c[i], ok)) for i in range(1, 5))
        ok = _all(ok, _at_most(low, high), _at_most(low, opened), _at_most(opened, high),
                  _at_most(low, close), _at_most(close, high))  # fmt: skip
        closed = _uniform(pc.less(closes, self.received_us), ',"closed":true', ',"closed":false')
        parts: _Parts = [
            self.head + f'"interval":{_json(self.name.interval or "")},"timestamp":"',
            *self.timestamp(micros), 'Z","open":"', c[1], '","high":"', c[2], '","low":"', c[3],
            '","close":"', c[4], '","volume":"', c[5], '","trade_count":', c[8], closed,
            ',"source":"binance.kline"},',
        ]  # fmt: skip
        return ok, _join(parts)


def _plain(column: pa.Array) -> pa.Array:
    """Which decimals (of the shape :data:`_DECIMAL`) Decimal prints as they are written."""
    tiny = pc.starts_with(column, "0.000000")
    if not pc.any(tiny).as_py():
        return pc.invert(tiny)
    return pc.invert(pc.match_substring_regex(column, _EXPONENT_FORM))


def _float(column: pa.Array, ok: pa.Array) -> pa.Array:
    return pc.cast(_where(ok, column), pa.float64())


def _where(ok: pa.Array, column: pa.Array) -> pa.Array:
    """``column`` where ``ok``, ``0`` elsewhere, so that it casts (copied only when needed)."""
    return column if pc.all(ok).as_py() else pc.if_else(ok, column, "0")


def _at_most(a: tuple[pa.Array, pa.Array], b: tuple[pa.Array, pa.Array]) -> pa.Array:
    """Provably ``a <= b`` (text, float): the floats are apart, or the texts are equal. (A
    float is rounded monotonically, so ``float(a) < float(b)`` means ``a < b``; where the
    floats are equal but the texts are not, the row path decides.)"""
    return pc.or_(pc.less(a[1], b[1]), pc.equal(a[0], b[0]))


def _all(*masks: pa.Array) -> pa.Array:
    result = masks[0]
    for mask in masks[1:]:
        result = pc.and_(result, mask)
    return result


def _uniform(mask: pa.Array, true: str, false: str) -> pa.Array | str:
    """``true`` where ``mask``, ``false`` elsewhere: one text when it is the same for all
    rows (as it most often is), which :func:`_join` merges with its neighbours."""
    if pc.all(mask).as_py():
        return true
    if not pc.any(mask).as_py():
        return false
    return pc.if_else(mask, true, false)


def _join(parts: _Parts) -> pa.Array:
    """The row-wise concatenation of ``parts``; neighbouring texts are joined first (the
    cost of the join grows with the number of parts)."""
    merged: _Parts = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return pc.binary_join_element_wise(*merged, "")
