"""The dump fixtures (tests/fixtures/binance_vision, rows from Binance's own documentation) and
what their CSV members say, read independently of the code under test."""

from __future__ import annotations

import zipfile
from pathlib import Path

FIXTURES = Path(__file__).parents[3] / "fixtures" / "binance_vision"
SPOT = FIXTURES / "data" / "spot"
UM = FIXTURES / "data" / "futures" / "um"
CM = FIXTURES / "data" / "futures" / "cm"
MICROS = FIXTURES / "us"

SPOT_KLINES = SPOT / "monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip"
SPOT_TRADES = SPOT / "monthly/trades/BTCUSDT/BTCUSDT-trades-2024-03.zip"
SPOT_AGG = SPOT / "daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-03-01.zip"
UM_KLINES = UM / "monthly/klines/BTCUSDT/1w/BTCUSDT-1w-2017-07.zip"
UM_TRADES = UM / "monthly/trades/BTCUSDT/BTCUSDT-trades-2017-07.zip"
UM_AGG = UM / "monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2017-06.zip"
UM_BOOK = UM / "daily/bookTicker/BNBUSDT/BNBUSDT-bookTicker-2019-09-09.zip"
CM_KLINES = CM / "monthly/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2020-06.zip"
CM_TRADES = CM / "monthly/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2020-06.zip"
CM_BOOK = CM / "daily/bookTicker/BTCUSD_200626/BTCUSD_200626-bookTicker-2020-06-04.zip"
US_KLINES = MICROS / "BTCUSDT-1m-2025-01.zip"
US_TRADES = MICROS / "BTCUSDT-trades-2025-01.zip"
US_AGG = MICROS / "BTCUSDT-aggTrades-2025-01-01.zip"


def member_text(archive: Path) -> str:
    with zipfile.ZipFile(archive) as opened:
        [member] = opened.namelist()
        return opened.read(member).decode()


def csv_rows(archive: Path) -> list[list[str]]:
    """The data rows of an archive's CSV, header left out."""
    rows = [line.split(",") for line in member_text(archive).splitlines() if line]
    return rows[1:] if not rows[0][0].isdigit() else rows


def plain_copy(archive: Path, folder: Path) -> Path:
    """The archive's CSV as a plain file of the same name (``….csv``), in the same folders
    (so of the same market) under ``folder``."""
    target = folder / archive.relative_to(FIXTURES).with_suffix(".csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(member_text(archive))
    return target
