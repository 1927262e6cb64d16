"""Against the real dump site: run with PROVIDERS_SANDBOX_MODE=official (needs the internet).

One monthly archive of each time unit with its checksum, through the downloader: 2024's spot
klines in milliseconds, 2025's in microseconds. ``BINANCE_VISION_URL`` may point elsewhere (the
sandbox's ``python -m sandbox.vision``, to check this test itself offline)."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import date
from pathlib import Path

import pytest

from marketdata.settings import Settings
from producers.binance.download import download, plan

pytestmark = pytest.mark.skipif(
    os.environ.get("PROVIDERS_SANDBOX_MODE") != "official",
    reason="PROVIDERS_SANDBOX_MODE is not 'official'",
)


@pytest.mark.parametrize(
    ("month", "first_open"),
    [(date(2024, 1, 1), "1704067200000"), (date(2025, 1, 1), "1735689600000000")],
)
async def test_a_real_archive_and_its_checksum(
    tmp_path: Path, month: date, first_open: str
) -> None:
    end = month.replace(day=31)
    archives = plan(["BTCUSDT"], "spot", "klines", month, end, today=date.today(), interval="1d")
    assert [archive.monthly for archive in archives] == [True]
    result = await download(archives, tmp_path, base_url=Settings.from_env().binance_vision)
    assert (result.missing, result.failed) == ([], [])
    (path,) = result.paths
    checksum = path.with_name(path.name + ".CHECKSUM").read_text()
    assert checksum.split()[1:] == [f"BTCUSDT-1d-{month:%Y-%m}.zip"]
    with zipfile.ZipFile(path) as zipped:
        (member,) = zipped.namelist()
        rows = io.TextIOWrapper(zipped.open(member)).read().splitlines()
    assert member == f"BTCUSDT-1d-{month:%Y-%m}.csv"
    assert len(rows) == 31
    assert rows[0].split(",")[0] == first_open  # no header row on spot
    assert all(len(row.split(",")) == 12 for row in rows)
