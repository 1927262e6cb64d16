"""Binance dump files to encoded envelopes, a column at a time: the import's fast path.

Pure apart from reading the file; no Kafka. A file's member is read in blocks of a few MB (cut
after the block's last line end, so each block's first line number is known and memory stays
flat whatever the file's size). A clean block (ASCII, no empty lines, no bare ``\\r``) is parsed
by pyarrow into text columns, each line checked against a whitelist (one regular expression of
the row's shape, then ranges), and every row that passes becomes the
JSON text of its record(s), built for the whole block at once in exactly the bytes
:func:`marketdata.codec.encode_ticks` / ``encode_bars`` would write. The whitelist is strict:
what it passes is a row the row path (:func:`producers.binance.dumps.normalise_row`) turns into
the same records, written in canonical form (no leading zeros, no number :class:`~decimal.Decimal`
prints in exponent form). Every other row, and every block that is not clean, goes through the
row path with its own line number, so dead letters and unusual but valid rows come out as the
row path gives them; the records of both are spliced into one stream in the file's order.

:func:`read_envelopes` yields the same pages as :func:`producers.binance.imports.read_pages`
(the same rows per page, the same records per envelope), with the records already encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from marketdata.codec import encode_bars, encode_ticks
from marketdata.epoch import EPOCH, LATEST_US, Unit
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from marketdata.topics import instrument_key
from producers.binance.dumps import FIELDS, normalise_row, row_unit
from producers.binance.vision import (
    DAMAGE,
    MAX_LINE,
    DumpError,
    DumpName,
    DumpReader,
    Line,
    LineSplitter,
    text_of,
)
from producers.publisher import Envelope

BLOCK_BYTES: Final = 4 << 20
ENVELOPE_RECORDS: Final = 500  # Kafka's limit is 1 MiB; a record is ~250 bytes
# A line this long could be cut by the row path (MAX_LINE characters); it is left to it.
_LONGEST: Final = MAX_LINE - 96
# Of a line longer than a block, what is kept: MAX_LINE characters of up to 4 bytes each.
_KEEP: Final = 4 * MAX_LINE + 4
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
_PER_US: Final[dict[Unit, int]] = {"ms": 1000, "us": 1}

Topic = Literal["ticks", "bars"]


@dataclass(slots=True)
class EncodedPage:
    """What a page of rows gave: envelopes in the file's order, and the rows refused, each as
    it came with ``file:line: reason``."""

    envelopes: list[Envelope] = field(default_factory=list)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)


def blocks(pieces: Iterator[bytes], size: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The bytes of ``pieces`` regrouped into blocks of about ``size`` bytes, each ending at a
    line end (the last one at the end of the data). A line longer than that keeps its first
    bytes (the row path reads no more of it than :data:`MAX_LINE` characters) and the rest
    is dropped. At most one block is held. When reading fails, the lines read
    before are given first, then the error is raised."""
    held: list[bytes] = []
    length = 0
    dropping = False
    try:
        for piece in pieces:
            data = piece
            if dropping:
                end = data.find(b"\n")
                if end < 0:
                    continue
                data, dropping = data[end + 1 :], False
            held.append(data)
            length += len(data)
            if length < size:
                continue
            whole = b"".join(held)
            cut = whole.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep its beginning
                if length < _KEEP:
                    held = [whole]
                    continue
                held, length, dropping = [], 0, True
                yield whole[:_KEEP] + b"\n"
                continue
            held, length = [whole[cut:]], len(whole) - cut
            yield whole[:cut]
    except DAMAGE:
        whole = b"".join(held)
        if cut := whole.rfind(b"\n") + 1:
            yield whole[:cut]
        raise
    if length:
        yield b"".join(held)


def _clean(block: bytes) -> bool:
    """Whether ``block`` is ASCII with no bare ``\\r`` (which the row path takes for a line
    end); empty lines, which pyarrow skips, are found by counting its rows."""
    return block.isascii() and (b"\r" not in block or block.count(b"\r") == block.count(b"\r\n"))


def _lines_in(block: bytes) -> int:
    """The lines of a clean block (the last one may have no line end)."""
    return block.count(b"\n") + (not block.endswith(b"\n"))


def _json(value: str) -> str:
    return msgspec.json.encode(value).decode()


_Parts = list["pa.Array | str"]


class _Formats:
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
        micros = pc.multiply(pc.cast(_where(shaped, column), pa.int64()), _PER_US[self.unit])
        return pc.and_(shaped, pc.less(micros, LATEST_US)), micros

    def pattern(self, width: int) -> str:
        """The shape of a row this path vouches for, as a regular expression over its line:
        the field count, canonical ids and decimals, times with the digits of the file's
        unit (the kernel's magnitude rule), booleans as the row path reads them."""
        low, high = _TIME_DIGITS[self.unit]
        time = f"[1-9][0-9]{{{low - 1},{high - 1}}}"
        fields = {
            "klines": [time, *[_DECIMAL] * 5, time, _ANY, _ID, _ANY, _ANY, _ANY],
            "trades": [_ID, _DECIMAL, _DECIMAL, _ANY, time, _BOOLEAN],
            "aggTrades": [_ID, _DECIMAL, _DECIMAL, _ID, _ID, time, _BOOLEAN],
            "bookTicker": [_ID, *[_DECIMAL] * 4, time, time],
        }[self.name.kind]
        fields += [_ANY] * (width - len(fields))  # spot's isBestMatch
        return "^" + ",".join(fields) + "\\r?\\n?$"

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
        closed = pc.less(closes, self.received_us)
        parts: _Parts = [
            self.head + f'"interval":{_json(self.name.interval or "")},"timestamp":"',
            *self.timestamp(micros), 'Z","open":"', c[1], '","high":"', c[2], '","low":"', c[3],
            '","close":"', c[4], '","volume":"', c[5], '","trade_count":', c[8],
            pc.if_else(closed, ',"closed":true', ',"closed":false'),
            ',"source":"binance.rest.klines"},',
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


def _join(parts: _Parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


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


class _Pages:
    """Pages as :func:`producers.binance.imports.read_pages` cuts them (``page_rows`` records
    and rejected rows) and envelopes as the publisher cuts them (``limit`` records, and at
    each page's end), from record texts that each end with a comma."""

    def __init__(self, topic: Topic, key: bytes, page_rows: int, limit: int) -> None:
        self.topic = topic
        self.key = key
        self.page_rows = page_rows
        self.limit = limit
        self.prefix = (encode_bars([]) if topic == "bars" else encode_ticks([]))[:-2]
        self.page = EncodedPage()
        self.weight = 0  # of the page: records and rejected rows
        self.parts: list[bytes | memoryview] = []
        self.count = 0  # of the open envelope
        self.done: list[EncodedPage] = []

    def texts(self, data: bytes | memoryview, count: int, *, row_ends: bool = True) -> None:
        """``count`` records' texts; a page ends only where a row does."""
        self.parts.append(data)
        self.count += count
        self.weight += count
        if self.count >= self.limit:
            self._envelope()
        if row_ends and self.weight >= self.page_rows:
            self.close()

    def run(
        self, data: memoryview, offsets: np.ndarray, start: int, end: int, per_row: int
    ) -> None:
        """Rows ``start:end`` of a block's texts, each ``per_row`` records."""
        while start < end:
            room = min(self.limit - self.count, self.page_rows - self.weight)
            stop = min(end, start + max(1, -(-room // per_row)))
            self.texts(data[offsets[start] : offsets[stop]], (stop - start) * per_row)
            start = stop

    def reject(self, rejected: tuple[bytes, str]) -> None:
        self.page.rejected.append(rejected)
        self.weight += 1
        if self.weight >= self.page_rows:
            self.close()

    def _envelope(self) -> None:
        if self.parts:
            last = self.parts[-1][:-1]  # its comma
            value = b"".join([self.prefix, *self.parts[:-1], last, b"]}"])
            self.page.envelopes.append(Envelope(self.topic, self.key, value, self.count))
        self.parts, self.count = [], 0

    def close(self) -> None:
        self._envelope()
        if self.page.envelopes or self.page.rejected:
            self.done.append(self.page)
        self.page, self.weight = EncodedPage(), 0

    def take(self) -> list[EncodedPage]:
        done, self.done = self.done, []
        return done


def _record_texts(records: list[Tick] | list[Bar]) -> Iterator[bytes]:
    for record in records:
        encoded = encode_bars([record]) if isinstance(record, Bar) else encode_ticks([record])
        yield encoded[encoded.index(b"[") + 1 : -2] + b","


def read_envelopes(
    path_name: str, reader: DumpReader, name: DumpName, received_at: datetime, *,
    page_rows: int, block_bytes: int = BLOCK_BYTES, limit: int = ENVELOPE_RECORDS,
    finished: Callable[[], None] | None = None,
) -> Iterator[EncodedPage]:  # fmt: skip
    """The pages of one open dump file, as :func:`producers.binance.imports.read_pages` gives
    them but with the records encoded; ``finished()`` once the file is read, before its last
    page. Raises :class:`DumpError` for the file as a whole."""
    reading = _Reading(path_name, name, received_at, page_rows, limit)
    try:
        for block in blocks(reader.pieces(), block_bytes):
            reading.block(block)
            yield from reading.pages.take()
    except DAMAGE as exc:
        raise reader.damaged(reading.number, exc) from None
    if finished:
        finished()
    reading.pages.close()
    yield from reading.pages.take()


class _Reading:
    """One file's blocks, in order, into pages."""

    def __init__(
        self, path_name: str, name: DumpName, received_at: datetime, page_rows: int, limit: int
    ) -> None:
        self.rows = RowPath(path_name, name, received_at)
        topic: Topic = "bars" if name.kind == "klines" else "ticks"
        self.pages = _Pages(topic, instrument_key(name.exchange, name.symbol), page_rows, limit)
        self.per_row = 2 if name.kind == "bookTicker" else 1
        self.number = 0  # lines done
        self.formats: _Formats | None = None

    def block(self, block: bytes) -> None:
        if self.number == 0 or self.rows.unit is None:
            block = self._until_unit(block)
        if not block:
            return
        unit = self.rows.unit
        if unit not in _PER_US or not _clean(block) or not self._columns(block, unit):
            self._row_path(block)

    def _until_unit(self, block: bytes) -> bytes:
        """Line 1 (byte-order mark, header) and the lines until the file's unit is known go
        through the row path; the rest of the block is returned."""
        start = 0
        while start < len(block) and (self.number == 0 or self.rows.unit is None):
            end = block.find(b"\n", start) + 1 or len(block)
            self._row_path(block[start:end])
            start = end
        return block[start:]

    def _row_path(self, data: bytes) -> None:
        split = LineSplitter(text_of(data), self.number)
        for line in split.lines():
            if split.header is not None:
                self.rows.header = split.header
            records, rejected = self.rows.line(line)
            if rejected:
                self.pages.reject(rejected)
            texts = list(_record_texts(records))
            for index, text in enumerate(texts, start=1):
                self.pages.texts(text, 1, row_ends=index == len(texts))
        if split.header is not None:
            self.rows.header = split.header
        self.number = split.number

    def _columns(self, block: bytes, unit: Unit) -> bool:
        """The block through pyarrow; False (nothing done) when pyarrow cannot read it."""
        kind = self.rows.name.kind
        first = block[: block.find(b"\n")].count(b",") + 1
        width = first if first in FIELDS[kind] else max(FIELDS[kind])
        other: list[int] = []  # lines (1 = the block's first) of another field count

        def count_off(row: pcsv.InvalidRow) -> str:
            other.append(row.number or 0)
            return "skip"

        names = [f"c{i}" for i in range(width)]
        try:
            table = pcsv.read_csv(
                pa.py_buffer(block),
                read_options=pcsv.ReadOptions(column_names=names, use_threads=False),
                parse_options=pcsv.ParseOptions(quote_char=False, invalid_row_handler=count_off),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), check_utf8=False),
            ).combine_chunks()  # fmt: skip
        except (pa.ArrowException, ValueError):
            return False
        lines = _lines_in(block)
        if 0 in other or len(other) + table.num_rows != lines:
            return False
        if self.formats is None:
            self.formats = _Formats(self.rows.name, unit, self.rows.received_at)
        columns = [table.column(i).chunk(0) if table.num_rows else pa.array([], pa.string())
                   for i in range(width)]  # fmt: skip
        ends = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n")) + 1
        if len(ends) < lines:
            ends = np.append(ends, len(block))
        starts = np.concatenate([[0], ends[:-1]])
        # Each line as a string (its line end included), over the block's own bytes.
        texts_of_lines = pa.StringArray.from_buffers(
            lines, pa.py_buffer(np.concatenate([[0], ends]).astype(np.int32)), pa.py_buffer(block)
        )
        shaped = pc.match_substring_regex(texts_of_lines, self.formats.pattern(width))
        shaped = shaped.to_numpy(zero_copy_only=False) & (ends - starts <= _LONGEST)
        other_lines = np.asarray(other, np.int64) - 1
        parsed = np.delete(np.arange(lines), other_lines)
        ok, texts = self.formats.kind(columns, pa.array(shaped[parsed]))
        self._splice(block, ends, parsed, other_lines, ok=ok, texts=texts)
        return True

    def _splice(
        self, block: bytes, ends: np.ndarray, parsed: np.ndarray, other: np.ndarray, *,
        ok: pa.Array, texts: pa.Array,
    ) -> None:  # fmt: skip
        """Runs of vouched rows as slices of their texts, the other lines through the row path,
        in the block's order: ``parsed`` lines are the table's rows, ``other`` lines had
        another field count, ``ends`` are where the lines end."""
        base = self.number
        lines = len(ends)
        refused = parsed[~ok.to_numpy(zero_copy_only=False)]
        fallback = np.sort(np.concatenate([other, refused])).tolist()
        buffers = texts.buffers()
        offsets = np.frombuffer(buffers[1], np.int32)[texts.offset : texts.offset + len(texts) + 1]
        data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
        unparsed = set(other.tolist())
        row = 0  # of the table, which lacks the lines of another field count
        previous = -1
        for line in fallback:
            run = line - previous - 1
            self.pages.run(data, offsets, row, row + run, self.per_row)
            row += run + (line not in unparsed)
            self.number = base + line
            self._row_path(block[ends[line - 1] if line else 0 : ends[line]])
            previous = line
        self.pages.run(data, offsets, row, row + lines - previous - 1, self.per_row)
        self.number = base + lines
