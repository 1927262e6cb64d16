"""Binance's public data dumps (data.binance.vision) as files: names and streaming readers.

Pure apart from reading the local file it is given; no Kafka. An archive's name says what it
holds (``BTCUSDT-1m-2024-09.zip``, ``BTCUSDT-aggTrades-2024-09-21.zip``,
``BTCUSDT-bookTicker-2024-09-21.zip``), its folder which market: the site's layout is
``data/spot/…``, ``data/futures/um/…`` (USD-M) and ``data/futures/cm/…`` (COIN-M). Each zip holds
one CSV named like it; futures CSVs begin with a header row, spot ones do not.

Futures are instruments of their own, not spot's: their records carry the exchange
``BINANCE-UM`` or ``BINANCE-CM`` (:data:`EXCHANGES`), spot stays ``BINANCE`` as live and REST.

A file is read line by line, never whole; a line longer than :data:`MAX_LINE` characters is
reported as such and skipped, and bytes that are not UTF-8 survive (as surrogate escapes) into
the row, where they fail a field, so any file gives rows or a :class:`DumpError` naming it.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, Final, Literal, TextIO, cast

from marketdata.errors import MarketDataError

# ISA-L (the isal package, a dependency) inflates about 3x faster than zlib, and inflating was a
# quarter of reading a kline file; should it be missing, zlib inflates.
_isal_inflater: Callable[[], object] | None
_inflate_errors: tuple[type[Exception], ...]
try:
    from isal import isal_zlib
except ImportError:  # pragma: no cover - installed with the project
    _isal_inflater, _inflate_errors = None, (zlib.error,)
else:
    _isal_inflater = partial(isal_zlib.decompressobj, -15)
    # Its stub calls the class an instance; it is an Exception subclass, not zlib.error's.
    _inflate_errors = (zlib.error, cast("type[Exception]", isal_zlib.error))

Market = Literal["spot", "um", "cm"]
Kind = Literal["klines", "trades", "aggTrades", "bookTicker"]
MARKETS: Final[tuple[Market, ...]] = ("spot", "um", "cm")
KINDS: Final[tuple[Kind, ...]] = ("klines", "trades", "aggTrades", "bookTicker")
EXCHANGES: Final[dict[Market, str]] = {"spot": "BINANCE", "um": "BINANCE-UM", "cm": "BINANCE-CM"}
# Binance's kline intervals; the dumps write a month as "1mo" (case-insensitive file systems).
INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
     "1M")
)  # fmt: skip
_FILE_INTERVALS: Final = {"1mo": "1M"}
_PERIOD: Final = re.compile(r"\d{4}-\d{2}(?:-\d{2})?")
_SYMBOL: Final = re.compile(r"[A-Z0-9_]{1,40}")
SUFFIXES: Final = (".zip", ".csv")

MAX_LINE: Final = 4096  # a dump row is ~100 characters; a longer line is no row
_CHUNK: Final = 1 << 20


class DumpError(MarketDataError):
    """A dump file that cannot be read as one: the message names the file."""


class ChecksumMismatch(DumpError):
    """An archive whose SHA-256 is not the one its ``.CHECKSUM`` file gives."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says, over what the file's name and folder say."""

    market: Market | None = None
    kind: Kind | None = None
    symbol: str | None = None
    interval: str | None = None


@dataclass(frozen=True, slots=True)
class DumpName:
    """What one dump file holds."""

    market: Market
    kind: Kind
    symbol: str
    interval: str | None  # klines only
    period: str  # YYYY-MM (monthly) or YYYY-MM-DD (daily); "" when the name gives none

    @property
    def exchange(self) -> str:
        return EXCHANGES[self.market]


def market_of(path: Path) -> Market | None:
    """The market the site's folder layout gives: ``…/spot/…``, ``…/futures/um/…``,
    ``…/futures/cm/…``; None when the path has no such folders."""
    parts = path.parts[:-1]
    for index, part in enumerate(parts):
        if part == "spot" and index + 1 < len(parts) and parts[index + 1] in {"daily", "monthly"}:
            return "spot"
        if part == "futures" and index + 1 < len(parts) and parts[index + 1] in {"um", "cm"}:
            return cast(Market, parts[index + 1])
    return None


NO_OVERRIDES: Final = Overrides()


def parse_name(path: Path, overrides: Overrides = NO_OVERRIDES) -> DumpName:
    """Market, kind, symbol, interval and period of a dump file, from its name and folder;
    ``overrides`` win over both. :class:`DumpError` when neither tells."""
    stem = path.name
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    symbol, _, rest = stem.partition("-")
    token, _, period = rest.partition("-")
    kind: Kind | None
    interval: str | None = None
    if token in {"trades", "aggTrades", "bookTicker"}:
        kind = cast(Kind, token)
    elif token in INTERVALS or token in _FILE_INTERVALS:
        kind, interval = "klines", _FILE_INTERVALS.get(token, token)
    else:
        kind, period = None, ""
    kind = overrides.kind or kind
    symbol = (overrides.symbol or symbol).upper()
    if kind is None:
        raise DumpError(f"{path.name}: not a Binance dump name (SYMBOL-KIND-DATE or SYMBOL-"
                        "INTERVAL-DATE); say what it holds with --kind and --symbol")  # fmt: skip
    if not _SYMBOL.fullmatch(symbol):
        raise DumpError(f"{path.name}: no Binance symbol in the name; give --symbol")
    if kind == "klines":
        interval = overrides.interval or interval
        if interval not in INTERVALS:
            raise DumpError(f"{path.name}: klines need an interval ({', '.join(sorted(INTERVALS))})"
                            "; give --interval")  # fmt: skip
    else:
        interval = None
    if not _PERIOD.fullmatch(period):
        period = ""
    market = overrides.market or market_of(path) or "spot"
    return DumpName(market, kind, symbol, interval, period)


def checksum_of(archive: Path) -> Path:
    return archive.with_name(archive.name + ".CHECKSUM")


def verify_checksum(archive: Path) -> bool:
    """Check ``archive`` against the ``<archive>.CHECKSUM`` beside it (``<sha256>  <name>``),
    reading it in chunks; False when there is none. :class:`ChecksumMismatch` when it differs."""
    listed = checksum_of(archive)
    if not listed.is_file():
        return False
    digest = hashlib.sha256()
    try:
        with listed.open("rb") as file:
            text = file.read(4096).decode("ascii", "replace")
        with archive.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DumpError(f"{archive.name}: cannot be read: {exc.strerror or exc}") from None
    expected = text.split()[0].lower() if text.split() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ChecksumMismatch(f"{listed.name}: not a SHA-256 checksum file")
    if digest.hexdigest() != expected:
        raise ChecksumMismatch(
            f"{archive.name}: SHA-256 {digest.hexdigest()} does not match {listed.name}"
            f" ({expected}): the file is damaged or incomplete"
        )
    return True


# Line number, text without its line end, and whether it was cut: a line longer than MAX_LINE
# gives its first MAX_LINE characters.
Line = tuple[int, str, bool]


# TextIOWrapper's own read size (io.TextIOWrapper._CHUNK_SIZE); the size of the bulk reads (a
# zip member read 8 kB at a time costs 40 % more than the inflating itself).
_TEXT_CHUNK: Final = 8192
_BULK: Final = 1 << 20
DAMAGE: Final = (zipfile.BadZipFile, *_inflate_errors, EOFError, OSError)
_ZLIB_INFLATER: Final = type(zlib.decompressobj(-15))


def faster_inflate(member: IO[bytes]) -> bool:
    """Have ISA-L inflate ``member``, a zip member just opened (nothing read yet): the same
    bytes, faster. zipfile goes on checking the CRC-32 and the size as before; a damaged
    stream raises ISA-L's error instead of zlib's (both in :data:`DAMAGE`). True when swapped;
    when ISA-L is missing, the member is not deflated, or zipfile's internals are not as
    expected (its decompressor is private), zlib stays."""
    state = vars(member) if hasattr(member, "__dict__") else {}
    if _isal_inflater is None or state.get("_compress_type") != zipfile.ZIP_DEFLATED:
        return False
    if type(state.get("_decompressor")) is not _ZLIB_INFLATER:
        return False
    state["_decompressor"] = _isal_inflater()
    return True


class LineSplitter:
    """The lines of a dump's text as the import numbers them: line ends ``\\n``, ``\\r\\n`` or
    ``\\r``; an empty line is skipped (but counted); line 1 loses a byte-order mark and, when
    its first field is not digits, is the header (kept in :attr:`header`, not yielded). Starts
    after line ``number``, so a piece of a file is numbered as in the file."""

    def __init__(self, text: TextIO, number: int = 0) -> None:
        self._text = text
        self.number = number
        self.header: list[str] | None = None

    def lines(self) -> Iterator[Line]:
        while True:
            text = self._text.readline(MAX_LINE)
            if not text:
                return
            self.number += 1
            if not text.endswith("\n") and len(text) >= MAX_LINE:
                while (more := self._text.readline(MAX_LINE)) and not more.endswith("\n"):
                    pass
                yield self.number, text, True
                continue
            text = text.rstrip("\r\n")
            if self.number == 1:
                text = text.removeprefix("\ufeff")
                if text and not text.split(",", 1)[0].strip().isdigit():
                    self.header = text.split(",")
                    continue
            if text:
                yield self.number, text, False


def text_of(data: bytes) -> TextIO:
    """Bytes of a dump as the reader decodes them: UTF-8, other bytes kept as surrogates."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape",
                            newline="")  # fmt: skip


class DumpReader:
    """The lines of one dump file, zipped or plain, streamed: :meth:`lines` yields each line's
    number, text and whether it was cut, after the header (if any, in :attr:`header`);
    :attr:`position` is how far into the file on disk reading has come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._split = LineSplitter(io.StringIO())
        try:
            self._file: BinaryIO = path.open("rb")
        except OSError as exc:
            raise DumpError(f"{path.name}: cannot be read: {exc.strerror or exc}") from None
        self._zip: zipfile.ZipFile | None = None
        try:
            self._text = io.TextIOWrapper(self._member(), encoding="utf-8",
                                          errors="surrogateescape", newline="")  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _member(self) -> BinaryIO:
        if self.path.suffix != ".zip":
            return self._file
        try:
            self._zip = zipfile.ZipFile(self._file)
            members = [m for m in self._zip.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise DumpError(f"{self.path.name}: a dump archive holds one CSV, this holds "
                                f"{len(members)} files")  # fmt: skip
            member = self._zip.open(members[0])
            faster_inflate(member)
            return cast(BinaryIO, member)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
                OSError, ValueError, RuntimeError) as exc:  # fmt: skip
            raise DumpError(f"{self.path.name}: not a readable zip archive: {exc}") from None

    @property
    def position(self) -> int:
        try:
            return self._file.tell()
        except (OSError, ValueError):
            return 0

    def lines(self) -> Iterator[Line]:
        split = self._split = LineSplitter(self._text)
        try:
            yield from split.lines()
        except DAMAGE as exc:
            raise self.damaged(split.number, exc) from None

    @property
    def header(self) -> list[str] | None:
        """The header row :meth:`lines` found, if any."""
        return self._split.header

    def pieces(self) -> Iterator[bytes]:
        """The member's bytes, in large reads. Should one fail, the member is read again from
        its start in the pieces :meth:`lines` reads (TextIOWrapper's), and those after the
        bytes already given are given until that read fails too: a damaged archive fails at
        the same byte as the line reader, with the same lines before. The caller counts lines
        for :meth:`damaged`."""
        read = cast(io.BufferedIOBase, self._text.buffer).read
        given = 0
        try:
            while piece := read(_BULK):
                given += len(piece)
                yield piece
        except DAMAGE:
            pass
        else:
            return
        with DumpReader(self.path) as again:
            read1 = cast(io.BufferedIOBase, again._text.buffer).read1
            seen = 0
            while piece := read1(_TEXT_CHUNK):
                seen += len(piece)
                if seen > given:
                    yield piece[max(0, len(piece) - (seen - given)) :]
                    given = seen
        # Read to its end the second time: what failed once (a read error) did not again.

    def damaged(self, lines_done: int, exc: BaseException) -> DumpError:
        """The error of a read that failed after ``lines_done`` lines."""
        return DumpError(f"{self.path.name}: line {lines_done + 1}: the archive is damaged "
                         f"or truncated: {exc}")  # fmt: skip

    def close(self) -> None:
        if (text := getattr(self, "_text", None)) is not None:
            text.close()
        if self._zip is not None:
            self._zip.close()
        self._file.close()

    def __enter__(self) -> DumpReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
