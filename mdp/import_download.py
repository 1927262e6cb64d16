"""`mdp import binance-vision --start …`: the download mode's files, fetched from the dump site
(``BINANCE_VISION_URL``) into the cache and handed to the import with what could not be fetched
(reported in its summary, never fatal)."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click

from marketdata.errors import MarketDataError
from marketdata.settings import Settings
from producers.binance.download import (
    Archive,
    DownloadResult,
    Market,
    Progress,
    default_cache,
    download,
    parse_end,
    parse_start,
    plan,
)
from producers.binance.imports import Skipped, Source
from sandbox.vision import FakeVision

MISSING = "not on the dump site (404): not published yet, or the symbol not listed then"


def download_sources(
    settings: Settings, *, symbols: str | None, market: str, kind: str | None,
    interval: str | None, start: str, end: str | None, cache: Path | None, concurrency: int,
) -> tuple[list[Source], int]:  # fmt: skip
    """The archives of ``start``..``end`` in the cache (fetched or already there), then one
    :class:`Skipped` per archive missing or failed; and their total size."""
    if not symbols or not kind:
        raise MarketDataError("download mode (--start) needs --symbol and --kind")
    today = datetime.now(UTC).date()
    try:
        first, last = parse_start(start), parse_end(end) if end else today
        archives = plan([s.strip() for s in symbols.split(",") if s.strip()],
                        cast(Market, market), kind, first, last, today=today,
                        interval="1mo" if interval in ("1M", "1mo") else interval)  # fmt: skip
    except ValueError as exc:
        raise MarketDataError(f"download mode: {exc}") from exc
    folder = cache or default_cache(settings)
    started = time.monotonic()
    fetched = {"bytes": 0}

    def rate(_: object) -> str:
        megabytes = fetched["bytes"] / 1e6
        return f"{megabytes:.1f} MB  {megabytes / max(time.monotonic() - started, 1e-3):.1f} MB/s"

    with click.progressbar(length=len(archives), label="download", file=sys.stderr,
                           item_show_func=rate) as bar:  # fmt: skip

        def progress(size: int, files: int) -> None:
            fetched["bytes"] += size
            bar.update(files, None)

        result = asyncio.run(_download(settings, archives, folder, concurrency, progress))
    click.echo(f"{len(result.paths)} archives in {folder} ({result.cached} already there, "
               f"{result.bytes_fetched / 1e6:.1f} MB fetched), {len(result.missing)} missing, "
               f"{len(result.failed)} failed", err=True)  # fmt: skip
    sources: list[Source] = [*result.paths]
    sources += [Skipped(archive.name, MISSING) for archive in result.missing]
    sources += [Skipped(archive.name, reason) for archive, reason in result.failed]
    return sources, sum(path.stat().st_size for path in result.paths)


async def _download(
    settings: Settings, archives: list[Archive], folder: Path, concurrency: int,
    progress: Progress,
) -> DownloadResult:  # fmt: skip
    """From ``BINANCE_VISION_URL``; in sandbox mode without it, from the sandbox's dump server
    started for this run, so that download mode works out of the box."""
    if settings.providers_sandbox_mode == "official" or settings.binance_vision_url:
        return await download(archives, folder, base_url=settings.binance_vision,
                              concurrency=concurrency, progress=progress)  # fmt: skip
    venue = FakeVision(per_day=1000)
    await venue.start()
    click.echo(f"sandbox mode: the dumps come from the sandbox's dump server ({venue.url})",
               err=True)  # fmt: skip
    try:
        return await download(archives, folder, base_url=venue.url, concurrency=concurrency,
                              progress=progress)  # fmt: skip
    finally:
        await venue.aclose()
