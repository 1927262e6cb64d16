"""`mdp import binance-vision`: Binance's dump files into ``md.bars.raw`` / ``md.ticks.raw``.

Files come from a list of local paths (:func:`local_sources` walks folders) or from anything else
that yields them, such as a downloader, together with :class:`Skipped` reports for what it could
not fetch. Each file is checked against its ``.CHECKSUM`` (when one sits beside it), read in
pages of rows in a thread while the previous page is published, and published through the one
backfill loop (:func:`producers.backfill.publish_pages`). A row that does not normalise is a
dead letter (origin ``binance.vision``) whose reason names the file and the line; a file that
cannot be read is skipped and reported; the import goes on either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from marketdata.topics import Topics
from producers.backfill import BackfillResult, Opener, Page, publish_pages
from producers.binance.columns import BLOCK_BYTES, read_envelopes
from producers.binance.dumps import RowPath
from producers.binance.vision import (
    NO_OVERRIDES,
    SUFFIXES,
    DumpError,
    DumpName,
    DumpReader,
    Overrides,
    parse_name,
    verify_checksum,
)

log = logging.getLogger(__name__)

ORIGIN: Final = "binance.vision"
STAGE: Final = "binance.import"
PAGE_ROWS: Final = 5000

# (records, bytes): records published and rows rejected so far, bytes of the files read so far.
ImportProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file not read (or not read to its end), and why."""

    name: str
    reason: str


Source = Path | Skipped


@dataclass(frozen=True, slots=True)
class ImportResult:
    published: int = 0  # records: a bookTicker row gives two quotes
    rejected: int = 0  # rows dead-lettered
    files_read: int = 0
    skipped: tuple[Skipped, ...] = ()
    bytes_read: int = 0
    verified: int = 0  # files checked against their .CHECKSUM
    kinds: frozenset[str] = frozenset()

    def summary(self, topics: Topics) -> str:
        where = " and ".join(
            topic for kind, topic in (("bars", topics.bars_raw), ("ticks", topics.ticks_raw))
            if kind in self.kinds
        ) or "Kafka"  # fmt: skip
        line = (f"{self.published} records from {self.files_read} file"
                f"{'' if self.files_read == 1 else 's'} ({self.bytes_read / 1e6:.1f} MB, "
                f"{self.verified} checksum-verified) published to {where}")  # fmt: skip
        if self.rejected:
            line += f"; {self.rejected} malformed rows dead-lettered to {topics.dlq}"
        if self.skipped:
            line += f"; {len(self.skipped)} skipped: " + "; ".join(
                s.reason if s.reason.startswith(s.name) else f"{s.name}: {s.reason}"
                for s in self.skipped
            )
        return line


def local_sources(paths: Iterable[Path]) -> list[Path]:
    """The dump files named, folders walked for ``*.zip`` and ``*.csv`` (sorted, so months and
    days go in order); a path that does not exist is a :class:`DumpError`."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise DumpError(f"{path}: no such file or folder")
    return found


@dataclass
class _State:
    result: ImportResult = field(default_factory=ImportResult)
    bytes_done: int = 0  # of files finished
    reader: DumpReader | None = None
    finished: set[Path] = field(default_factory=set)

    @property
    def position(self) -> int:
        return self.bytes_done + (self.reader.position if self.reader else 0)

    def finish(self, path: Path) -> None:
        """Done with a file, read or not: all its bytes count as gone through."""
        self.reader = None
        if path not in self.finished:
            self.finished.add(path)
            self.bytes_done += _size(path)


def read_pages(
    path: Path, name: DumpName, state: _State, *, page_rows: int = PAGE_ROWS,
    received_at: datetime | None = None,
) -> Generator[Page, None, None]:  # fmt: skip
    """The row path: the records of one file in pages, and its rows that did not normalise,
    each with ``file:line: reason``, a line at a time. Raises :class:`DumpError` for the file
    as a whole. :func:`read_encoded` gives the same, faster."""
    rows = RowPath(path.name, name, received_at or datetime.now(UTC))
    records: list[Tick | Bar] = []
    rejected: list[tuple[bytes, str]] = []
    with DumpReader(path) as reader:
        state.reader = reader
        for line in _lines(reader, path, state):
            rows.header = reader.header
            found, refused = rows.line(line)
            records += found
            if refused:
                rejected.append(refused)
            if len(records) + len(rejected) >= page_rows:
                yield Page(records, rejected)
                records, rejected = [], []
        if records or rejected:
            yield Page(records, rejected)


def read_encoded(
    path: Path, name: DumpName, state: _State, *, page_rows: int = PAGE_ROWS,
    received_at: datetime | None = None, block_bytes: int = BLOCK_BYTES,
) -> Generator[Page, None, None]:  # fmt: skip
    """The pages :func:`read_pages` gives, with their records encoded into the envelopes the
    publisher would send, read a block of columns at a time (:mod:`producers.binance.columns`)."""
    with DumpReader(path) as reader:
        state.reader = reader
        try:
            for page in read_envelopes(
                path.name, reader, name, received_at or datetime.now(UTC), page_rows=page_rows,
                block_bytes=block_bytes, finished=lambda: state.finish(path),
            ):  # fmt: skip
                yield Page((), page.rejected, page.envelopes)
        finally:
            state.finish(path)


def _lines(reader: DumpReader, path: Path, state: _State) -> Iterator[tuple[int, str, bool]]:
    try:
        yield from reader.lines()
    finally:
        state.finish(path)  # before the last page is published, so that progress shows it all


async def _pages(
    sources: Iterable[Source] | AsyncIterable[Source], overrides: Overrides, state: _State,
    page_rows: int,
) -> AsyncIterator[Page]:  # fmt: skip
    async for source in _each(sources):
        if isinstance(source, Skipped):
            state.result = replace(state.result, skipped=(*state.result.skipped, source))
            continue
        try:
            async for page in _file_pages(source, overrides, state, page_rows):
                yield page
        except DumpError as exc:
            log.warning("skipped: %s", exc)
            skipped = Skipped(source.name, str(exc))
            state.result = replace(state.result, skipped=(*state.result.skipped, skipped))
        finally:
            state.finish(source)


async def _file_pages(
    path: Path, overrides: Overrides, state: _State, page_rows: int
) -> AsyncIterator[Page]:
    name = parse_name(path, overrides)
    verified = await asyncio.to_thread(verify_checksum, path) if path.suffix == ".zip" else False
    pages = read_encoded(path, name, state, page_rows=page_rows)
    kinds = {"bars" if name.kind == "klines" else "ticks"}
    state.result = replace(state.result, kinds=state.result.kinds | kinds)
    try:
        # Reading the next page runs in a thread while this one is published.
        ahead = asyncio.ensure_future(asyncio.to_thread(next, pages, None))
        while (page := await ahead) is not None:
            ahead = asyncio.ensure_future(asyncio.to_thread(next, pages, None))
            yield page
    finally:
        if not ahead.done():
            await asyncio.wait([ahead])
        await asyncio.to_thread(pages.close)
    state.result = replace(state.result, files_read=state.result.files_read + 1,
                           verified=state.result.verified + verified,
                           bytes_read=state.result.bytes_read + _size(path))  # fmt: skip


async def _each(sources: Iterable[Source] | AsyncIterable[Source]) -> AsyncIterator[Source]:
    if isinstance(sources, AsyncIterable):
        async for source in sources:
            yield source
    else:
        for source in sources:
            yield source


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def import_dumps(
    settings: Settings, sources: Iterable[Source] | AsyncIterable[Source], *,
    overrides: Overrides = NO_OVERRIDES, progress: ImportProgress | None = None,
    opener: Opener | None = None, page_rows: int = PAGE_ROWS,
) -> ImportResult:  # fmt: skip
    """Publish every row of every file; ``progress(records, bytes)`` after each page: records
    published and rows rejected so far, and bytes of the files read so far."""
    state = _State()
    so_far = [0, 0]

    def gauge(result: BackfillResult) -> tuple[int, int]:
        so_far[:] = [result.records + result.rejected, state.position]
        return 0, 0  # the loop's own (done, total) is not used: progress reads so_far

    asked = BackfillResult(ORIGIN, "dump", datetime.now(UTC), None)
    done = await publish_pages(
        settings, asked, _pages(sources, overrides, state, page_rows), stage=STAGE,
        origin=ORIGIN, gauge=gauge, opener=opener,
        progress=(lambda _, __: progress(*so_far)) if progress else None,
    )  # fmt: skip
    return replace(state.result, published=done.records, rejected=done.rejected)


def names(sources: Sequence[Path], overrides: Overrides) -> list[DumpName]:
    """What each file holds, as the import will read it (a bad name raises)."""
    return [parse_name(path, overrides) for path in sources]
