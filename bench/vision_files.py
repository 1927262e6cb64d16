"""Binance public-dump archives of realistic size, for bench/binance_import.py.

The files are what data.binance.vision serves for spot BTCUSDT: ``BTCUSDT-trades-2024-09-21.zip``
(``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``) and ``BTCUSDT-1m-2024-MM.zip``
(the twelve kline columns), each zip holding one CSV of the same name without a header row,
numbers written with eight decimals as Binance writes them, times in milliseconds (spot before
2025), and ``<archive>.CHECKSUM`` beside each (``sha256sum``'s line). Prices are a random walk
from a seed, so the same arguments give the same files.

Rows are written into the zip as they are made (one CSV line at a time through a deflate stream),
so a file of any size is made in constant memory: sandbox/vision.py builds archives in memory for
the loopback dump site, fine for its hundred rows a day, not for millions.
"""

from __future__ import annotations

import calendar
import hashlib
import random
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

SYMBOL: Final = "BTCUSDT"
DAY_MS: Final = 86_400_000
MINUTE_MS: Final = 60_000
FIRST_TRADE_ID: Final = 3_813_000_000  # about where BTCUSDT's spot trade ids stood in 2024-09
_WRITE_ROWS: Final = 4096  # rows joined into one write


def _decimal(units: int, decimals: int) -> str:
    """``units`` times 10^-decimals with eight decimals, as the dumps write every number (the hot
    loops below inline this for speed)."""
    whole, part = divmod(units, 10**decimals)
    return f"{whole}.{part:0{decimals}d}{'0' * (8 - decimals)}"


def _table(draw: Callable[[], float], size: int = 4096) -> list[int]:
    """``size`` draws, picked from by random bits in the loops (cheaper than drawing each)."""
    return [max(1, int(draw())) for _ in range(size)]


def _archive(path: Path, lines: Iterator[str]) -> Path:
    """``path`` (a .zip) holding one CSV of its name made of ``lines``, and its .CHECKSUM."""
    member = path.name.removesuffix(".zip") + ".csv"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(member, "w", force_zip64=True) as out,
    ):
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == _WRITE_ROWS:
                out.write("".join(chunk).encode())
                chunk.clear()
        out.write("".join(chunk).encode())
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest.hexdigest()}  {path.name}\n")
    return path


def _trade_lines(day: date, rows: int, seed: int, first_id: int) -> Iterator[str]:
    """A day of trades: the price in cents walking from 63,000.00 (about a 1 % move a day at
    1.5 million trades), sizes in lots of 0.00001 BTC (mostly small, now and then a block),
    several fills of one taker order sharing a millisecond and a price."""
    rng = random.Random(seed)
    rand, bits, gauss, expo = rng.random, rng.getrandbits, rng.gauss, rng.expovariate
    sizes = _table(lambda: rng.lognormvariate(4.0, 1.9))  # median 0.00055 BTC
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    last = start + DAY_MS - 1
    rate = rows * 0.56 / DAY_MS / 0.98  # orders (not fills) a millisecond, kept inside the day
    price, moment = 6_300_000, float(start)
    for trade_id in range(first_id, first_id + rows):
        if rand() >= 0.45:  # a new taker order; else another fill of the last one
            moment += expo(rate)
            price = max(100, price + int(gauss(0, 55)))
        qty = sizes[bits(12)]
        quote = price * qty
        yield (f"{trade_id},{price // 100}.{price % 100:02d}000000,"
               f"{qty // 100_000}.{qty % 100_000:05d}000,"
               f"{quote // 10_000_000}.{quote % 10_000_000:07d}0,"
               f"{min(int(moment), last)},{'True' if bits(1) else 'False'},True\n")  # fmt: skip


def write_trades(
    folder: Path, day: date, rows: int, *, seed: int = 21, first_id: int = FIRST_TRADE_ID
) -> Path:
    """``BTCUSDT-trades-<day>.zip`` of ``rows`` trades from id ``first_id``, with its checksum
    file."""
    lines = _trade_lines(day, rows, seed, first_id)
    return _archive(folder / f"{SYMBOL}-trades-{day:%Y-%m-%d}.zip", lines)


def _kline_lines(year: int, month: int, rng: random.Random, price: list[int]) -> Iterator[str]:
    """A month of 1m bars walking on from ``price[0]`` (cents), which it leaves where it ended:
    about $25 a minute, a few per cent a day; ~2.7 BTC a minute, 20-80 % of it taker buys."""
    bits, gauss = rng.getrandbits, rng.gauss
    volumes = _table(lambda: rng.lognormvariate(12.5, 0.8))  # 0.00001 BTC lots
    start = int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000
    opens = price[0]
    for minute in range(calendar.monthrange(year, month)[1] * 1440):
        opened = start + minute * MINUTE_MS
        close = max(10_000, opens + int(gauss(0, 2_500)))
        high, low = max(opens, close) + bits(10), max(1, min(opens, close) - bits(10))
        volume = volumes[bits(12)]
        taker = volume * (20 + bits(6)) // 100
        vwap = (high + low) // 2
        quote, taker_quote = volume * vwap, taker * vwap
        yield (f"{opened},{opens // 100}.{opens % 100:02d}000000,"
               f"{high // 100}.{high % 100:02d}000000,{low // 100}.{low % 100:02d}000000,"
               f"{close // 100}.{close % 100:02d}000000,"
               f"{volume // 100_000}.{volume % 100_000:05d}000,"
               f"{opened + MINUTE_MS - 1},{quote // 10_000_000}.{quote % 10_000_000:07d}0,"
               f"{max(1, volume // 180)},{taker // 100_000}.{taker % 100_000:05d}000,"
               f"{taker_quote // 10_000_000}.{taker_quote % 10_000_000:07d}0,0\n")  # fmt: skip
        opens = close
    price[0] = opens


def write_klines(folder: Path, year: int, months: int, seed: int = 1) -> list[Path]:
    """``BTCUSDT-1m-<year>-MM.zip`` for the first ``months`` months of ``year``."""
    rng, price = random.Random(seed), [4_250_000]
    return [
        _archive(folder / f"{SYMBOL}-1m-{year}-{month:02d}.zip",
                 _kline_lines(year, month, rng, price))
        for month in range(1, months + 1)
    ]  # fmt: skip


def kline_rows(year: int, months: int) -> int:
    return sum(calendar.monthrange(year, m)[1] * 1440 for m in range(1, months + 1))
