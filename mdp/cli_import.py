"""`mdp import …`: history from files into the pipeline (today: Binance's public dumps).

``mdp import binance-vision PATH...`` reads local archives and folders. Every way of getting files
(paths here; a download mode can add its options to the same command) feeds one function,
:func:`run_import`, which shows the progress and prints the summary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from marketdata.settings import Settings

if TYPE_CHECKING:
    from producers.binance.imports import ImportProgress, Source
    from producers.binance.vision import Kind, Market, Overrides

_MARKETS = ("spot", "um", "cm")
_KINDS = ("klines", "trades", "aggTrades", "bookTicker")


@click.group("import")
def import_group() -> None:
    """Load history from files into md.bars.raw / md.ticks.raw."""


@import_group.command("binance-vision")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--market", type=click.Choice(_MARKETS),
              help="spot, um (USD-M futures) or cm (COIN-M futures) [default: from the folder "
                   "layout data/spot|futures/um|futures/cm, else spot].")  # fmt: skip
@click.option("--kind", type=click.Choice(_KINDS), help="What the files hold [default: from "
              "the file name].")  # fmt: skip
@click.option("--symbol", help="e.g. BTCUSDT [default: from the file name].")
@click.option("--interval", help="Kline interval: 1s 1m … 1d 1w 1M [default: from the name].")
@click.option("--start", help="Download mode: fetch from the dump site (BINANCE_VISION_URL) from "
              "this month or day (2020-01, 2024-09-21) for --symbol (comma-separated for "
              "several), --kind [--interval] [--market], then import.")  # fmt: skip
@click.option("--end", help="Download mode: the last month or day [default: today].")
@click.option("--cache", type=click.Path(path_type=Path), help="Download mode: where archives "
              "are kept and resumed [default: MDP_STATE_DIR/binance-vision].")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Download mode: archives fetched at once.")  # fmt: skip
@click.pass_obj
def import_binance_vision(
    settings: Settings, *, paths: tuple[Path, ...], market: str | None, kind: str | None,
    symbol: str | None, interval: str | None, start: str | None, end: str | None,
    cache: Path | None, concurrency: int,
) -> None:  # fmt: skip
    """Binance's public data dumps (data.binance.vision): klines, trades, aggTrades, bookTicker
    of spot (exchange BINANCE), USD-M (BINANCE-UM) and COIN-M futures (BINANCE-CM).

    \b
    With --start (download mode), the archives are fetched from the dump site first: monthly
    ones for whole months, daily ones for the rest, verified, cached and resumed; an archive
    not published is reported as missing in the summary.

    \b
    PATH is a .zip or .csv as Binance names them (BTCUSDT-1m-2024-09.zip,
    BTCUSDT-aggTrades-2024-09-21.zip) or a folder, walked for them. An archive with a
    .CHECKSUM beside it is verified first; one that does not match is skipped and reported.
    Rows that do not normalise go to md.dlq with file and line; the import goes on.
    """
    from marketdata.errors import MarketDataError  # noqa: PLC0415
    from producers.binance.imports import local_sources  # noqa: PLC0415
    from producers.binance.vision import Overrides, parse_name  # noqa: PLC0415

    overrides = Overrides(market=cast("Market | None", market), kind=cast("Kind | None", kind),
                          symbol=symbol, interval=interval)  # fmt: skip
    if start is not None:
        if paths:
            raise MarketDataError("give the files (PATH...) or --start to download, not both")
        from mdp.import_download import download_sources  # noqa: PLC0415

        sources, size = download_sources(
            settings, symbols=symbol, market=market or "spot", kind=kind, interval=interval,
            start=start, end=end, cache=cache, concurrency=concurrency,
        )  # fmt: skip
        named = replace(overrides, symbol=None, interval=None)  # by the archives' names
        run_import(settings, sources, named, total_bytes=size)
        return
    if end is not None or cache is not None:
        raise MarketDataError("--end and --cache belong to download mode: give --start")
    if not paths:
        raise MarketDataError("give the dump files or folders to import (PATH...)")
    files = local_sources(paths)
    for path in paths:
        if path.is_file():  # named on purpose: a name that says nothing is a mistake
            parse_name(path, overrides)
    if not files:
        raise MarketDataError("no .zip or .csv files in " + ", ".join(map(str, paths)))
    run_import(settings, files, overrides, total_bytes=sum(f.stat().st_size for f in files))


def run_import(
    settings: Settings, sources: Iterable[Source] | AsyncIterable[Source], overrides: Overrides,
    *, total_bytes: int | None = None, label: str = "binance-vision",
) -> None:  # fmt: skip
    """Import ``sources`` (files, or reports of files skipped) with a progress bar showing
    rows/s and MB/s, then one summary line; exit code 1 when nothing could be read."""
    from producers.binance.imports import import_dumps  # noqa: PLC0415

    with rate_bar(label, total_bytes) as progress:
        result = asyncio.run(
            import_dumps(settings, sources, overrides=overrides, progress=progress)
        )
    click.echo(result.summary(settings.topics))
    if result.files_read == 0 and result.skipped:
        sys.exit(1)


@contextmanager
def rate_bar(label: str, total_bytes: int | None) -> Iterator[ImportProgress]:
    """A progress bar on stderr over the bytes of the files, with rows, rows/s and MB/s after
    it; and the ``progress(rows, bytes)`` callback that moves it."""
    started = time.monotonic()
    shown = {"rows": 0, "bytes": 0}

    def rates(_: object) -> str:
        elapsed = max(time.monotonic() - started, 1e-3)
        rows, done = shown["rows"], shown["bytes"]
        return (f"{rows:,} rows  {rows / elapsed:,.0f} rows/s  "
                f"{done / 1e6 / elapsed:.1f} MB/s")  # fmt: skip

    with click.progressbar(length=max(total_bytes or 1, 1), label=label, file=sys.stderr,
                           item_show_func=rates, show_pos=False) as bar:  # fmt: skip

        def progress(rows: int, done: int) -> None:
            shown["rows"], shown["bytes"] = rows, done
            if total_bytes is None:
                bar.length = max(done, 1)
            bar.update(min(done, bar.length or done) - bar.pos, shown)

        yield progress
    # The bar is drawn only on a terminal: the rates go to stderr in any case.
    click.echo(f"{label}: {rates(None)} over {time.monotonic() - started:.1f} s", err=True)
