"""Rows of Binance's public dumps to records: pure functions, no I/O.

A dump row is the REST row its file was made from (klines from ``/api/v3/klines``, trades from
``historicalTrades``, aggTrades from ``aggTrades``), written as CSV: so each goes through the
REST normaliser of :mod:`producers.binance.normalise` and becomes the record REST and the live
stream give, with the same source and id (``binance.trade`` + trade id, ``binance.aggTrade`` +
aggregate id, bars keyed by open time), and copies of one trade from all three deduplicate to one
row. A bookTicker row becomes the two quotes the live ``@bookTicker`` gives, keyed by update id
and side and stamped with the transaction time. Futures records get their market's exchange
(``BINANCE-UM``, ``BINANCE-CM``, see :mod:`producers.binance.vision`).

A file's times are all in one unit: the unit of its first row's time, by the kernel's one rule
(:func:`marketdata.epoch.epoch_unit`); a row in another unit is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from marketdata.epoch import Unit, epoch_unit
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.binance import normalise
from producers.binance.vision import MAX_LINE, DumpError, DumpName, Kind, Line

# Column counts: spot rows carry one more column (isBestMatch) than futures rows.
FIELDS: Final[dict[Kind, frozenset[int]]] = {
    "klines": frozenset((12,)),
    "trades": frozenset((6, 7)),
    "aggTrades": frozenset((7, 8)),
    "bookTicker": frozenset((7,)),
}
# The column of each kind's time, which sets the file's unit.
TIME_COLUMN: Final[dict[Kind, int]] = {"klines": 0, "trades": 4, "aggTrades": 5, "bookTicker": 5}
_UNIT_NAMES: Final[dict[Unit, str]] = {
    "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}  # fmt: skip
_BOOLEANS: Final = {"True": True, "true": True, "False": False, "false": False}
_MAX_INT_TEXT: Final = 20

Normaliser = Callable[[DumpName, list[str], Unit, datetime], list[Tick] | list[Bar]]


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}… ({len(text)} characters)"


def _int(text: str) -> int | str:
    """An id's digits as an int; anything else as it came, for the normaliser to refuse."""
    if len(text) <= _MAX_INT_TEXT and text.isascii() and text.isdigit():
        return int(text)
    return text


def _flag(text: str) -> bool | str:
    return _BOOLEANS.get(text, text)


def _epoch(field: str, text: str) -> int:
    if not (len(text) <= _MAX_INT_TEXT and text.isascii() and text.isdigit()):
        raise InvalidRecord(field, f"must be an epoch time in digits, got {_short(text)}")
    return int(text)


def time_unit(field: str, text: str) -> Unit:
    """The unit of an epoch time written as digits, by the kernel's magnitude rule."""
    return epoch_unit(_epoch(field, text), field)


def _held_to(field: str, text: str, unit: Unit) -> int:
    """The time as an int (which the normalisers read faster than its text), when in ``unit``."""
    number = _epoch(field, text)
    found = epoch_unit(number, field)
    if found != unit:
        raise InvalidRecord(field, f"{text} is in {_UNIT_NAMES[found]}, but this file's times "
                                   f"are in {_UNIT_NAMES[unit]}")  # fmt: skip
    return number


def kline(name: DumpName, row: list[str], unit: Unit, received_at: datetime) -> list[Bar]:
    """``open time, open, high, low, close, volume, close time, quote volume, trades, taker buy
    base, taker buy quote, ignore``: the REST kline row; closed, as every dumped bar."""
    opened, closed = _held_to("timestamp", row[0], unit), _held_to("close_time", row[6], unit)
    fields = [opened, *row[1:6], closed, *row[7:]]
    return [normalise.rest_kline(name.symbol, name.interval or "", fields, received_at,
                                 name.exchange)]  # fmt: skip


def trade(name: DumpName, row: list[str], unit: Unit, received_at: datetime) -> list[Tick]:
    """``id, price, qty, quote qty, time, isBuyerMaker[, isBestMatch]``."""
    time = _held_to("timestamp", row[4], unit)
    fields = {"id": _int(row[0]), "price": row[1], "qty": row[2], "time": time,
              "isBuyerMaker": _flag(row[5])}  # fmt: skip
    return [normalise.rest_trade(name.symbol, fields, received_at, name.exchange)]


def agg_trade(name: DumpName, row: list[str], unit: Unit, received_at: datetime) -> list[Tick]:
    """``aggregate id, price, qty, first trade id, last trade id, time, isBuyerMaker[,
    isBestMatch]``."""
    time = _held_to("timestamp", row[5], unit)
    fields = {"a": _int(row[0]), "p": row[1], "q": row[2], "f": _int(row[3]),
              "l": _int(row[4]), "T": time, "m": _flag(row[6])}  # fmt: skip
    return [normalise.rest_agg_trade(name.symbol, fields, received_at, name.exchange)]


def book_ticker(name: DumpName, row: list[str], unit: Unit, received_at: datetime) -> list[Tick]:
    """``update id, bid, bid qty, ask, ask qty, transaction time, event time``."""
    time = _held_to("timestamp", row[5], unit)
    _held_to("event_time", row[6], unit)
    fields = {"u": _int(row[0]), "s": name.symbol, "b": row[1], "B": row[2], "a": row[3],
              "A": row[4], "T": time}  # fmt: skip
    return normalise.book_ticker(fields, received_at, exchange=name.exchange)


NORMALISERS: Final[dict[Kind, Normaliser]] = {
    "klines": kline, "trades": trade, "aggTrades": agg_trade, "bookTicker": book_ticker,
}  # fmt: skip


def normalise_row(
    name: DumpName, row: list[str], unit: Unit, received_at: datetime
) -> list[Tick] | list[Bar]:
    """One CSV row (its fields as text) of a file of ``name`` with times in ``unit``: records,
    or :class:`InvalidRecord` naming the field, whatever the row holds."""
    if len(row) not in FIELDS[name.kind]:
        counts = " or ".join(map(str, sorted(FIELDS[name.kind])))
        raise InvalidRecord("row", f"{len(row)} fields; a {name.kind} row has {counts}")
    return NORMALISERS[name.kind](name, row, unit, received_at)


def row_unit(name: DumpName, row: list[str]) -> Unit:
    """The unit of a row's time: what the first row sets for its whole file."""
    if len(row) not in FIELDS[name.kind]:
        raise InvalidRecord("row", f"{len(row)} fields; not a {name.kind} row")
    return time_unit("timestamp", row[TIME_COLUMN[name.kind]])


def check_header(path_name: str, name: DumpName, header: list[str]) -> None:
    if len(header) not in FIELDS[name.kind]:
        raise DumpError(f"{path_name}: its header has {len(header)} columns, not those of "
                        f"{name.kind}: {','.join(header)[:120]!r}")  # fmt: skip


class RowPath:
    """The row path: one line of a file of ``name`` at a time, as text, to records or a
    rejected row; the first row that has a time sets the file's unit."""

    def __init__(self, path_name: str, name: DumpName, received_at: datetime) -> None:
        self.path_name = path_name
        # A file name need not be valid Unicode; a dead letter's reason must be.
        self.label = path_name.encode("utf-8", "backslashreplace").decode()
        self.name = name
        self.received_at = received_at
        self.unit: Unit | None = None
        self.header: list[str] | None = None

    def line(self, line: Line) -> tuple[list[Tick] | list[Bar], tuple[bytes, str] | None]:
        number, text, cut = line
        if self.unit is None and self.header:
            check_header(self.path_name, self.name, self.header)
        if cut:
            return [], (text.encode("utf-8", "surrogateescape"),
                        f"{self.label}:{number}: row: a line of over {MAX_LINE} characters "
                        "(its beginning kept)")  # fmt: skip
        row = text.split(",")
        try:
            if self.unit is None:
                self.unit = row_unit(self.name, row)
            return normalise_row(self.name, row, self.unit, self.received_at), None
        except InvalidRecord as exc:
            return [], (text.encode("utf-8", "surrogateescape"), f"{self.label}:{number}: {exc}")
