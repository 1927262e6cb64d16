"""The loopback dump site serves data.binance.vision's layout: one CSV per zip named like the
archive, ``sha256sum`` checksum lines, the dumps' columns (spot without a header, futures with
one, spot in µs from 2025), monthly archives made of their days, and each fault on demand."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import pytest

from sandbox.binance import kline_row
from sandbox.vision import DumpFile, FakeVision, archive_bytes, archive_rows, parse_path

PUBLISHED = date(2025, 3, 31)
SPOT_KLINES = DumpFile("spot", "klines", "BTCUSDT", date(2024, 9, 1), True, "1h")
SPOT_TRADES = DumpFile("spot", "trades", "BTCUSDT", date(2024, 9, 21), False)
UM_AGG = DumpFile("um", "aggTrades", "BTCUSDT", date(2024, 9, 21), False)


@pytest.fixture
async def site() -> AsyncIterator[FakeVision]:
    fake = FakeVision(per_day=20, published_until=PUBLISHED)
    await fake.start()
    yield fake
    await fake.aclose()


async def get(fake: FakeVision, path: str, timeout_s: float = 10) -> tuple[int, bytes]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(fake.url + path) as r:
        return r.status, await r.read()


def csv_of(content: bytes) -> tuple[str, list[str]]:
    with zipfile.ZipFile(io.BytesIO(content)) as zipped:
        (member,) = zipped.infolist()
        return member.filename, zipped.read(member).decode().splitlines()


@pytest.mark.parametrize(
    ("archive", "path"),
    [
        (SPOT_KLINES, "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-09.zip"),
        (SPOT_TRADES, "/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-09-21.zip"),
        (UM_AGG, "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-09-21.zip"),
        (DumpFile("cm", "bookTicker", "BTCUSD_PERP", date(2024, 2, 1), True),
         "/data/futures/cm/monthly/bookTicker/BTCUSD_PERP/BTCUSD_PERP-bookTicker-2024-02.zip"),
    ],
)  # fmt: skip
def test_archives_have_the_sites_paths(archive: DumpFile, path: str) -> None:
    assert archive.path == path
    assert parse_path(path) == (archive, False)
    assert parse_path(path + ".CHECKSUM") == (archive, True)


@pytest.mark.parametrize(
    "path",
    [
        "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-09-01.zip",  # a day in monthly/
        "/data/spot/daily/trades/BTCUSDT/ETHUSDT-trades-2024-09-21.zip",  # another symbol's
        "/data/spot/daily/klines/BTCUSDT/7m/BTCUSDT-7m-2024-09-21.zip",  # no such interval
        "/data/futures/xm/daily/trades/BTCUSDT/BTCUSDT-trades-2024-09-21.zip",
        "/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-02-30.zip",
        "/index.html",
    ],
)
async def test_what_is_not_an_archive_of_the_layout_is_404(site: FakeVision, path: str) -> None:
    assert parse_path(path) is None
    assert (await get(site, path))[0] == 404


async def test_a_zip_holds_one_csv_named_like_it_and_its_checksum_is_sha256sums_line(
    site: FakeVision,
) -> None:
    status, content = await get(site, SPOT_TRADES.path)
    assert status == 200
    name, lines = csv_of(content)
    assert name == "BTCUSDT-trades-2024-09-21.csv"
    assert [line.split(",") for line in lines] == archive_rows(SPOT_TRADES, per_day=20)
    status, checksum = await get(site, SPOT_TRADES.path + ".CHECKSUM")
    assert status == 200
    digest = hashlib.sha256(content).hexdigest()
    assert checksum.decode() == f"{digest}  BTCUSDT-trades-2024-09-21.zip\n"
    assert content == archive_bytes(SPOT_TRADES, per_day=20)  # the same bytes every time


async def test_spot_has_no_header_and_futures_have_one(site: FakeVision) -> None:
    _, spot = csv_of((await get(site, SPOT_TRADES.path))[1])
    _, um = csv_of((await get(site, UM_AGG.path))[1])
    first = spot[0].split(",")
    assert first[0].isdigit()
    assert first[5:] in (["True", "True"], ["False", "True"])  # isBuyerMaker, isBestMatch
    assert (
        um[0]
        == "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
    )
    assert um[1].split(",")[-1] in ("true", "false")
    assert len(um) == 21


async def test_spot_times_are_microseconds_from_2025_and_futures_stay_in_milliseconds(
    site: FakeVision,
) -> None:
    day = date(2025, 1, 1)
    spot = DumpFile("spot", "klines", "BTCUSDT", day, False, "1h")
    um = DumpFile("um", "klines", "BTCUSDT", day, False, "1h")
    old = DumpFile("spot", "klines", "BTCUSDT", date(2024, 12, 31), False, "1h")
    _, spot_lines = csv_of((await get(site, spot.path))[1])
    _, um_lines = csv_of((await get(site, um.path))[1])
    _, old_lines = csv_of((await get(site, old.path))[1])
    assert spot_lines[0].split(",")[0] == "1735689600000000"
    assert spot_lines[0].split(",")[6] == "1735693199999999"
    assert um_lines[1].split(",")[0] == "1735689600000"
    assert old_lines[-1].split(",")[6] == "1735689599999"
    trades = archive_rows(DumpFile("spot", "trades", "BTCUSDT", day, False), per_day=20)
    assert all(len(row[4]) == 16 for row in trades)


def test_monthly_archives_are_their_days_and_klines_are_the_rest_fakes() -> None:
    september = archive_rows(SPOT_KLINES)
    days = [row for n in range(1, 31) for row in archive_rows(
        DumpFile("spot", "klines", "BTCUSDT", date(2024, 9, n), False, "1h"))]  # fmt: skip
    assert september == days
    assert len(september) == 30 * 24
    assert september[0] == [str(value) for value in kline_row("BTCUSDT", "1h", 1725148800000)]


async def test_unpublished_and_missing_archives_are_404(site: FakeVision) -> None:
    later = DumpFile("spot", "trades", "BTCUSDT", date(2025, 4, 1), False)
    april = DumpFile("spot", "klines", "BTCUSDT", date(2025, 3, 1), True, "1h")
    site.missing.add(SPOT_TRADES.name)
    site.missing.add(UM_AGG.path + ".CHECKSUM")
    assert (await get(site, later.path))[0] == 404
    assert (await get(site, april.path))[0] == 200  # March is over by the 31st
    assert (await get(site, SPOT_TRADES.path))[0] == 404
    assert (await get(site, SPOT_TRADES.path + ".CHECKSUM"))[0] == 404
    assert (await get(site, UM_AGG.path))[0] == 200
    assert (await get(site, UM_AGG.path + ".CHECKSUM"))[0] == 404
    spot_book = DumpFile("spot", "bookTicker", "BTCUSDT", date(2024, 9, 21), False)
    assert (await get(site, spot_book.path))[0] == 404  # published for futures only


async def test_injected_faults_hit_the_next_answers_only(site: FakeVision) -> None:
    whole = archive_bytes(SPOT_TRADES, per_day=20)
    site.inject(SPOT_TRADES.name, "truncated")
    site.inject(SPOT_TRADES.name, "missing")
    site.inject(SPOT_TRADES.name + ".CHECKSUM", "bad_checksum")
    assert await get(site, SPOT_TRADES.path) == (200, whole[: len(whole) // 2])
    assert (await get(site, SPOT_TRADES.path))[0] == 404
    assert await get(site, SPOT_TRADES.path) == (200, whole)
    _, checksum = await get(site, SPOT_TRADES.path + ".CHECKSUM")
    assert checksum.split()[0].decode() != hashlib.sha256(whole).hexdigest()
    _, checksum = await get(site, SPOT_TRADES.path + ".CHECKSUM")
    assert checksum.split()[0].decode() == hashlib.sha256(whole).hexdigest()


async def test_a_busy_site_and_a_garbled_checksum(site: FakeVision) -> None:
    site.inject(SPOT_TRADES.name, "unavailable")
    site.inject(SPOT_TRADES.name + ".CHECKSUM", "garbled")
    assert (await get(site, SPOT_TRADES.path))[0] == 503
    status, checksum = await get(site, SPOT_TRADES.path + ".CHECKSUM")
    assert status == 200
    with pytest.raises(UnicodeDecodeError):
        checksum.decode()


async def test_a_dropped_connection_ends_the_body_short(site: FakeVision) -> None:
    site.inject(SPOT_TRADES.name, "dropped")
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(site, SPOT_TRADES.path)
    assert (await get(site, SPOT_TRADES.path))[0] == 200


async def test_a_slow_answer_outlasts_a_short_timeout(site: FakeVision) -> None:
    site.slow_s = 2.0
    site.inject(SPOT_TRADES.name, "slow")
    with pytest.raises(asyncio.TimeoutError):
        await get(site, SPOT_TRADES.path, timeout_s=0.2)
    assert (await get(site, SPOT_TRADES.path))[0] == 200
    assert site.fetched() == [SPOT_TRADES.path, SPOT_TRADES.path]


async def test_concurrent_requests_are_counted(site: FakeVision) -> None:
    site.delay_s = 0.2
    await asyncio.gather(*(get(site, SPOT_TRADES.path) for _ in range(3)))
    assert site.max_in_flight == 3
    assert site.in_flight == 0
