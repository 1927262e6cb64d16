"""Binance's public data dumps (data.binance.vision) fetched into a local cache, ready to import.

:func:`plan` turns a range into archives: monthly ones for whole months that are over, daily ones
for the rest (the current month has only daily archives). :func:`download` fetches them
concurrently (a bound), each zip verified against the SHA-256 of its ``.CHECKSUM`` while it
streams to a temporary file that is renamed into place only once verified, so an interruption
never leaves a half archive under the real name. The cache mirrors the site's layout; the
checksum is kept beside its zip (what the importer verifies), and a hidden marker records the
verified file's size and time so that a re-run skips it without reading it again.

A 404 is not an error: the day is not published yet, or the symbol was not listed then; it is
reported as missing, and a month whose monthly archive is missing (not published in the first
days of the next month) is fetched day by day instead. Timeouts, dropped connections and 5xx/429
answers are retried with backoff; a checksum mismatch deletes the file and is retried once.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Final, Literal

import aiohttp

from marketdata.backoff import Backoff
from marketdata.errors import MarketDataError, TransientError
from marketdata.settings import Settings

Market = Literal["spot", "um", "cm"]
MARKETS: Final = ("spot", "um", "cm")
KINDS: Final = ("klines", "trades", "aggTrades", "bookTicker")
INTERVALS: Final = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                    "1d", "3d", "1w", "1mo")  # fmt: skip
# Progress in increments: bytes just received, archives just made ready (fetched or cached).
Progress = Callable[[int, int], None]
_CHUNK: Final = 1 << 16
_RETRIED_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_MONTH: Final = re.compile(r"^\d{4}-\d{2}$")
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")


class ArchiveMissing(MarketDataError):
    """The site answered 404: not published (yet), or no such symbol then."""


class ChecksumMismatch(MarketDataError):
    """The archive's SHA-256 is not the one its ``.CHECKSUM`` gives (or that file is malformed)."""


@dataclass(frozen=True)
class Archive:
    """One dump file: ``first`` is its day, or the first day of its month when ``monthly``."""

    market: Market
    kind: str
    symbol: str
    first: date
    monthly: bool
    interval: str | None = None

    @property
    def name(self) -> str:
        stamp = f"{self.first:%Y-%m}" if self.monthly else f"{self.first:%Y-%m-%d}"
        return f"{self.symbol}-{self.interval or self.kind}-{stamp}.zip"

    @property
    def path(self) -> str:
        """Its path on the site, also its place in the cache."""
        market = "spot" if self.market == "spot" else f"futures/{self.market}"
        period = "monthly" if self.monthly else "daily"
        folder = f"{self.symbol}/{self.interval}" if self.interval else self.symbol
        return f"data/{market}/{period}/{self.kind}/{folder}/{self.name}"

    def days(self) -> list[Archive]:
        """The daily archives covering the same days."""
        if not self.monthly:
            return [self]
        count = calendar.monthrange(self.first.year, self.first.month)[1]
        return [Archive(self.market, self.kind, self.symbol, self.first + timedelta(days=n),
                        False, self.interval) for n in range(count)]  # fmt: skip


@dataclass
class DownloadResult:
    paths: list[Path] = field(default_factory=list)  # verified archives, in time order
    missing: list[Archive] = field(
        default_factory=list
    )  # 404 (not published, not listed), in order
    failed: list[tuple[Archive, str]] = field(default_factory=list)  # with the reason, in order
    bytes_fetched: int = 0
    cached: int = 0  # archives already verified in the cache, not fetched again


def parse_start(text: str) -> date:
    """``2020-01`` (the month's first day) or ``2020-01-15``."""
    return date.fromisoformat(f"{text}-01" if _MONTH.fullmatch(text) else text)


def parse_end(text: str) -> date:
    """``2024-12`` (the month's last day) or ``2024-12-15``."""
    if _MONTH.fullmatch(text):
        first = date.fromisoformat(f"{text}-01")
        return first.replace(day=calendar.monthrange(first.year, first.month)[1])
    return date.fromisoformat(text)


def plan(
    symbols: Iterable[str], market: Market, kind: str, start: date, end: date, *, today: date,
    interval: str | None = None,
) -> list[Archive]:  # fmt: skip
    """The archives covering ``start``..``end`` (inclusive): monthly for whole months before
    ``today``'s, daily for the rest up to ``today`` (whose archive is not out until tomorrow:
    it comes back missing)."""
    _check(market, kind, interval)
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    current = today.replace(day=1)
    last = min(end, today)
    archives = []
    for symbol in symbols:
        day = start
        while day <= last:
            month_end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
            if day.day == 1 and month_end <= last and day < current:
                archives.append(Archive(market, kind, symbol.upper(), day, True, interval))
                day = month_end + timedelta(days=1)
            else:
                archives.append(Archive(market, kind, symbol.upper(), day, False, interval))
                day += timedelta(days=1)
    return archives


def _check(market: str, kind: str, interval: str | None) -> None:
    if market not in MARKETS:
        raise ValueError(f"market must be one of {', '.join(MARKETS)}, not {market!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if (kind == "klines") != (interval is not None):
        raise ValueError("klines need an interval, and only klines have one")
    if interval is not None and interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, not {interval!r}")
    if kind == "bookTicker" and market == "spot":
        raise ValueError("bookTicker archives are published for futures (um, cm) only")


def default_cache(settings: Settings) -> Path:
    """Under the state directory: the archives are the user's data, kept between runs."""
    return settings.state_dir / "binance-vision"


async def download(
    archives: Sequence[Archive], cache: Path, *, base_url: str, concurrency: int = 4,
    timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 0.5,
    progress: Progress | None = None, session: aiohttp.ClientSession | None = None,
) -> DownloadResult:  # fmt: skip
    """Fetch ``archives`` into ``cache`` (see the module's notes); never raises for one archive:
    each ends ready, missing or failed in the result."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    # No total: a big archive may take long; what must not happen is silence that long.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            connector = aiohttp.TCPConnector(limit=concurrency)
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        fetcher = _Fetcher(session, base_url.rstrip("/"), cache, asyncio.Semaphore(concurrency),
                           timeout, retries, backoff_s, progress)  # fmt: skip
        ready = await fetcher.run(archives)
        # A monthly archive not out yet (the first days of a month): its days are.
        instead = [day for archive in fetcher.result.missing if archive.monthly
                   for day in archive.days()]  # fmt: skip
        fetcher.result.missing = [archive for archive in fetcher.result.missing
                                  if not archive.monthly]  # fmt: skip
        ready += await fetcher.run(instead)
    result = fetcher.result
    ready.sort(key=lambda pair: (pair[0].symbol, pair[0].first))
    result.paths = [path for _, path in ready]
    result.missing.sort(key=lambda archive: (archive.symbol, archive.first))
    result.failed.sort(key=lambda failed: (failed[0].symbol, failed[0].first))
    return result


@dataclass
class _Fetcher:
    session: aiohttp.ClientSession
    base_url: str
    cache: Path
    slots: asyncio.Semaphore
    timeout: aiohttp.ClientTimeout
    retries: int
    backoff_s: float
    progress: Progress | None
    result: DownloadResult = field(default_factory=DownloadResult)

    async def run(self, archives: Sequence[Archive]) -> list[tuple[Archive, Path]]:
        found = await asyncio.gather(*(self._one(archive) for archive in archives))
        return [(archive, path) for archive, path in zip(archives, found, strict=True) if path]

    async def _one(self, archive: Archive) -> Path | None:
        dest = self.cache / archive.path
        async with self.slots:
            try:
                if await asyncio.to_thread(_verified, dest):
                    self.result.cached += 1
                    self._advance(0, 1)
                    return dest
                await self._attempts(archive, dest)
            except ArchiveMissing:
                self.result.missing.append(archive)
                return None
            except MarketDataError as exc:
                self.result.failed.append((archive, str(exc)))
                return None
            except OSError as exc:  # the cache's disk: full, read-only, no permission
                self.result.failed.append((archive, f"{archive.name}: {exc}"))
                return None
            self._advance(0, 1)
            return dest

    async def _attempts(self, archive: Archive, dest: Path) -> None:
        """Fetch, again after a transient failure (with backoff) or one checksum mismatch."""
        backoff = Backoff(initial=self.backoff_s, maximum=max(self.backoff_s, 10.0))
        mismatches = 0
        while True:
            try:
                await self._fetch(archive, dest)
            except ChecksumMismatch:
                mismatches += 1
                if mismatches > 1:
                    raise
            except TransientError:
                if backoff.attempts >= self.retries:
                    raise
                await asyncio.sleep(backoff.next_delay())
            else:
                return

    def _advance(self, size: int, files: int) -> None:
        self.result.bytes_fetched += size
        if self.progress is not None:
            self.progress(size, files)

    async def _fetch(self, archive: Archive, dest: Path) -> None:
        url = f"{self.base_url}/{archive.path}"
        try:
            checksum = await self._checksum(url + ".CHECKSUM", archive.name)
            _private_folder(dest.parent)
            for stale in dest.parent.glob(f".{archive.name}.*.part"):
                stale.unlink(missing_ok=True)  # left by a process killed mid-download
            part = dest.with_name(f".{archive.name}.{secrets.token_hex(4)}.part")
            try:
                digest = await self._stream(url, part, archive.name)
                if digest != checksum:
                    raise ChecksumMismatch(f"{archive.name}: SHA-256 {digest} is not the "
                                           f"{checksum} of its CHECKSUM; deleted")  # fmt: skip
                os.replace(part, dest)
            finally:
                part.unlink(missing_ok=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{archive.name}: {_describe(exc)}") from exc
        _write_private(dest.with_name(archive.name + ".CHECKSUM"),
                       f"{checksum}  {archive.name}\n".encode())  # fmt: skip
        _write_private(_marker(dest), _stamp(dest, checksum).encode())

    async def _checksum(self, url: str, name: str) -> str:
        async with self.session.get(url, timeout=self.timeout) as response:
            _status(response, name + ".CHECKSUM")
            text = (await response.read()).decode("ascii", "replace")
        parts = text.split()
        if len(parts) != 2 or not _SHA256.fullmatch(parts[0]) or parts[1].lstrip("*") != name:
            raise ChecksumMismatch(f"{name}.CHECKSUM is not '<sha256>  {name}': {text[:200]!r}")
        return parts[0].lower()

    async def _stream(self, url: str, part: Path, name: str) -> str:
        digest = hashlib.sha256()
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            async with self.session.get(url, timeout=self.timeout) as response:
                _status(response, name)
                async for chunk in response.content.iter_chunked(_CHUNK):
                    os.write(fd, chunk)
                    digest.update(chunk)
                    self._advance(len(chunk), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest.hexdigest()


def _status(response: aiohttp.ClientResponse, name: str) -> None:
    if response.status == 200:
        return
    if response.status == 404:
        raise ArchiveMissing(f"{name}: not found")
    problem = f"{name}: HTTP {response.status} {response.reason or ''}".rstrip()
    if response.status in _RETRIED_STATUS:
        raise TransientError(problem)
    raise MarketDataError(problem)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _marker(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.verified")


def _stamp(dest: Path, checksum: str) -> str:
    stat = dest.stat()
    return f"{checksum} {stat.st_size} {stat.st_mtime_ns}\n"


def _verified(dest: Path) -> bool:
    """Whether ``dest`` is in the cache and verified: its marker matches the file as it is, or
    (no marker: files copied in) its hash matches the checksum beside it."""
    checksum_file = dest.with_name(dest.name + ".CHECKSUM")
    try:
        checksum = checksum_file.read_text().split()[0].lower()
        with contextlib.suppress(OSError, ValueError):
            if _marker(dest).read_text() == _stamp(dest, checksum):
                return True
        digest = hashlib.sha256()
        with dest.open("rb") as archive:
            while chunk := archive.read(1 << 20):
                digest.update(chunk)
    except (OSError, ValueError, IndexError):  # not there, or not readable: fetched again
        return False
    if digest.hexdigest() != checksum:
        return False
    _write_private(_marker(dest), _stamp(dest, checksum).encode())
    return True


def _private_folder(folder: Path) -> None:
    """``folder`` and the levels above it that do not exist yet, created 0700: the archives
    are a user's own data."""
    for path in reversed([level for level in (folder, *folder.parents) if not level.exists()]):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)


def _write_private(path: Path, content: bytes) -> None:
    """Atomically, 0600."""
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.replace(part, path)
