"""Binance dump files to encoded envelopes, a column at a time: the import's fast path.

Pure apart from reading the file; no Kafka. A file's member is read in blocks of a few MB (cut
after the block's last line end, so each block's first line number is known and memory stays
flat whatever the file's size). A clean block (ASCII, no bare ``\\r``) is parsed by pyarrow
into text columns; :class:`~producers.binance.texts.Formats` checks each row against a strict
whitelist and builds the JSON text of the records of those it vouches for, for the whole block
at once, in exactly the bytes :func:`marketdata.codec.encode_ticks` / ``encode_bars`` write for
what the row path (:class:`producers.binance.dumps.RowPath`) makes of them. Every other row,
and every block that is not clean, goes through the row path with its own line number, so dead
letters and unusual but valid rows come out as the row path gives them; the records of both are
spliced into one stream in the file's order.

:func:`read_envelopes` yields the same pages as :func:`producers.binance.imports.read_pages`
(the same rows per page, the same records per envelope), with the records already encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from marketdata.codec import encode_bars, encode_ticks
from marketdata.epoch import Unit
from marketdata.records import Bar, Tick
from marketdata.topics import instrument_key
from producers.binance.dumps import FIELDS, RowPath
from producers.binance.texts import PER_US, Formats
from producers.binance.vision import (
    DAMAGE,
    MAX_LINE,
    DumpName,
    DumpReader,
    LineSplitter,
    text_of,
)
from producers.publisher import Envelope

BLOCK_BYTES: Final = 4 << 20
_FIRST_BLOCK: Final = 64 << 10
ENVELOPE_RECORDS: Final = 500  # Kafka's limit is 1 MiB; a record is ~250 bytes
# A line this long could be cut by the row path (MAX_LINE characters); it is left to it.
_LONGEST: Final = MAX_LINE - 96
# Of a line longer than a block, what is kept: MAX_LINE characters of up to 4 bytes each.
_KEEP: Final = 4 * MAX_LINE + 4
# The columns the records are made of (the others only have to be there, as the row path
# reads them: the regular expression of Formats.pattern checks whole lines).
_READ: Final = {
    "klines": (0, 1, 2, 3, 4, 5, 6, 8),
    "trades": (0, 1, 2, 4, 5),
    "aggTrades": (0, 1, 2, 3, 4, 5, 6),
    "bookTicker": (0, 1, 2, 3, 4, 5, 6),
}

Topic = Literal["ticks", "bars"]


@dataclass(slots=True)
class EncodedPage:
    """What a page of rows gave: envelopes in the file's order, and the rows refused, each as
    it came with ``file:line: reason``."""

    envelopes: list[Envelope] = field(default_factory=list)
    rejected: list[tuple[bytes, str]] = field(default_factory=list)


def blocks(
    pieces: Iterator[bytes], size: int = BLOCK_BYTES, first: int | None = None
) -> Iterator[bytes]:
    """The bytes of ``pieces`` regrouped into blocks of about ``size`` bytes (the first one of
    about ``first``, when given), each ending at a line end (the last one at the end of the
    data). A line longer than that keeps its first bytes (the row path reads no more of it
    than :data:`MAX_LINE` characters) and the rest is dropped. At most one block is held.
    When reading fails, the lines read before are given first, then the error is raised."""
    held: list[bytes] = []
    length = 0
    dropping = False
    within = first if first is not None and first < size else None
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
            if length < (within or size):
                continue
            block, held = _cut(held, within)
            within, length = None, len(held[0])
            if block:
                yield block
            elif length >= _KEEP:  # one line longer than a block: keep its beginning
                beginning = held[0][:_KEEP]
                held, length, dropping = [], 0, True
                yield beginning + b"\n"
    except DAMAGE:
        whole = b"".join(held)
        if cut := whole.rfind(b"\n") + 1:
            yield whole[:cut]
        raise
    if length:
        yield b"".join(held)


def _cut(held: list[bytes], within: int | None) -> tuple[bytes, list[bytes]]:
    """The ``held`` pieces cut after a line end (the last one in their first ``within`` bytes
    if there is one, else the very last): the block before it (empty when there is no line
    end) and, as one piece, what follows."""
    last = held[-1]
    if within is None and (at := last.rfind(b"\n") + 1):
        # Most often the last line end is in the last piece: the block is joined in one copy.
        return b"".join([*held[:-1], memoryview(last)[:at]]), [last[at:]]
    whole = b"".join(held)
    cut = (whole.rfind(b"\n", 0, within) + 1 if within is not None else 0) or (
        whole.rfind(b"\n") + 1
    )
    return whole[:cut], [whole[cut:]]


def _clean(block: bytes) -> bool:
    """Whether ``block`` is ASCII with no bare ``\\r`` (which the row path takes for a line
    end); empty lines, which pyarrow skips, are found by counting its rows."""
    return block.isascii() and (b"\r" not in block or block.count(b"\r") == block.count(b"\r\n"))


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
        # A small first block: its first line goes through the row path (header, the file's
        # unit) and the rest of it is copied, rather than the rest of a large block.
        for block in blocks(reader.pieces(), block_bytes, min(block_bytes, _FIRST_BLOCK)):
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
        self.formats: Formats | None = None

    def block(self, block: bytes) -> None:
        if self.number == 0 or self.rows.unit is None:
            block = self._until_unit(block)
        if not block:
            return
        unit = self.rows.unit
        if unit not in PER_US or not _clean(block) or not self._columns(block, unit):
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
                # One chunk for the whole block: no copy to combine chunks.
                read_options=pcsv.ReadOptions(column_names=names, use_threads=False,
                                              block_size=len(block) + 1),
                parse_options=pcsv.ParseOptions(quote_char=False, invalid_row_handler=count_off),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), check_utf8=False,
                    include_columns=[names[i] for i in _READ[kind]]),
            ).combine_chunks()  # fmt: skip
        except (pa.ArrowException, ValueError):
            return False
        # Where the lines end, found once (and so how many: the last may have no line end).
        ends = np.flatnonzero(np.frombuffer(block, np.uint8) == ord("\n")) + 1
        if not block.endswith(b"\n"):
            ends = np.append(ends, len(block))
        lines = len(ends)
        if 0 in other or len(other) + table.num_rows != lines:
            return False
        if self.formats is None:
            self.formats = Formats(self.rows.name, unit, self.rows.received_at)
        empty = pa.array([], pa.string())
        read = {i: table.column(f"c{i}").chunk(0) if table.num_rows else empty for i in _READ[kind]}
        columns = [read.get(i, empty) for i in range(width)]
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
