"""Downloading the public dumps against the loopback dump site (sandbox.vision): monthly archives
for whole months and daily ones for the rest, each verified against its CHECKSUM, with every
fault of the site: a missing day, a 404, a truncated zip, a bad checksum, slow answers and a
dropped connection; the concurrency bound; resume after an interruption; private cache files."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from marketdata.settings import Settings
from producers.binance.download import (
    Archive,
    DownloadResult,
    default_cache,
    download,
    parse_end,
    parse_start,
    plan,
)
from sandbox.vision import DumpFile, FakeVision, archive_bytes

TODAY = date(2024, 12, 2)
PER_DAY = 20
KINDS = [("klines", "1m"), ("trades", None), ("aggTrades", None), ("bookTicker", None)]


def names(archives: list[Archive]) -> list[str]:
    return [archive.name for archive in archives]


def daily(day: str, kind: str = "klines", market: str = "spot") -> Archive:
    interval = "1h" if kind == "klines" else None
    return Archive(market, kind, "BTCUSDT", date.fromisoformat(day), False, interval)  # type: ignore[arg-type]


# Planning ----------------------------------------------------------------------------------


def test_whole_months_are_monthly_and_the_rest_daily() -> None:
    archives = plan(["btcusdt"], "spot", "klines", date(2024, 1, 30), date(2024, 4, 2),
                    today=TODAY, interval="1h")  # fmt: skip
    assert names(archives) == [
        "BTCUSDT-1h-2024-01-30.zip", "BTCUSDT-1h-2024-01-31.zip", "BTCUSDT-1h-2024-02.zip",
        "BTCUSDT-1h-2024-03.zip", "BTCUSDT-1h-2024-04-01.zip", "BTCUSDT-1h-2024-04-02.zip",
    ]  # fmt: skip
    assert archives[2].path == "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-02.zip"


def test_month_options_cover_whole_months_leap_years_included() -> None:
    assert parse_start("2020-01") == date(2020, 1, 1)
    assert parse_end("2024-02") == date(2024, 2, 29)
    assert parse_end("2023-02") == date(2023, 2, 28)
    assert parse_end("2024-09-21") == parse_start("2024-09-21") == date(2024, 9, 21)
    leap = plan(["BTCUSDT"], "um", "trades", parse_start("2024-02"), parse_end("2024-02"),
                today=TODAY)  # fmt: skip
    assert names(leap) == ["BTCUSDT-trades-2024-02.zip"]
    assert [day.first.day for day in leap[0].days()] == list(range(1, 30))
    not_leap = plan(["BTCUSDT"], "um", "trades", date(2023, 2, 2), parse_end("2023-02"),
                    today=TODAY)  # fmt: skip
    assert names(not_leap)[-1] == "BTCUSDT-trades-2023-02-28.zip"
    assert len(not_leap) == 27


def test_the_current_month_is_daily_up_to_today() -> None:
    archives = plan(["BTCUSDT", "ETHUSDT"], "cm", "aggTrades", parse_start("2024-11"),
                    parse_end("2025-01"), today=TODAY)  # fmt: skip
    assert names(archives) == [
        "BTCUSDT-aggTrades-2024-11.zip", "BTCUSDT-aggTrades-2024-12-01.zip",
        "BTCUSDT-aggTrades-2024-12-02.zip", "ETHUSDT-aggTrades-2024-11.zip",
        "ETHUSDT-aggTrades-2024-12-01.zip", "ETHUSDT-aggTrades-2024-12-02.zip",
    ]  # fmt: skip
    assert (
        archives[1].path
        == "data/futures/cm/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-12-01.zip"
    )


@pytest.mark.parametrize(
    ("market", "kind", "interval", "problem"),
    [
        ("spot", "bookTicker", None, "futures"),
        ("spot", "klines", None, "interval"),
        ("spot", "trades", "1m", "interval"),
        ("spot", "klines", "7m", "interval"),
        ("options", "trades", None, "market"),
        ("spot", "depth", None, "kind"),
    ],
)
def test_what_the_site_does_not_publish_is_refused(
    market: str, kind: str, interval: str | None, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        plan(["BTCUSDT"], market, kind, date(2024, 1, 1), date(2024, 1, 2), today=TODAY,  # type: ignore[arg-type]
             interval=interval)  # fmt: skip


@pytest.mark.parametrize("market", ["spot", "um", "cm"])
@pytest.mark.parametrize(("kind", "interval"), KINDS)
def test_the_paths_are_the_dump_sites(market: str, kind: str, interval: str | None) -> None:
    for first, monthly in ((date(2024, 9, 1), True), (date(2024, 9, 21), False)):
        ours = Archive(market, kind, "BTCUSDT", first, monthly, interval)  # type: ignore[arg-type]
        site = DumpFile(market, kind, "BTCUSDT", first, monthly, interval)  # type: ignore[arg-type]
        assert "/" + ours.path == site.path
        assert ours.name == site.name


def test_the_cache_is_under_the_state_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"MDP_STATE_DIR": str(tmp_path / "state")})
    assert default_cache(settings) == tmp_path / "state" / "binance-vision"


# Downloading -------------------------------------------------------------------------------


@pytest.fixture
async def site() -> AsyncIterator[FakeVision]:
    fake = FakeVision(per_day=PER_DAY, published_until=date(2024, 12, 1))
    await fake.start()
    yield fake
    await fake.aclose()


async def fetch(
    site: FakeVision, cache: Path, archives: list[Archive], **options: float
) -> DownloadResult:
    settings: dict[str, float] = {"timeout_s": 5.0, "backoff_s": 0.01, **options}
    return await download(archives, cache, base_url=site.url, **settings)  # type: ignore[arg-type]


def expected(archive: Archive) -> bytes:
    site = DumpFile(archive.market, archive.kind, archive.symbol, archive.first, archive.monthly,
                    archive.interval)  # fmt: skip
    return archive_bytes(site, per_day=PER_DAY)


def stats(folder: Path, pattern: str) -> dict[Path, os.stat_result]:
    return {path: path.stat() for path in folder.rglob(pattern)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_archives_arrive_verified_in_order_private_and_counted(
    site: FakeVision, tmp_path: Path
) -> None:
    archives = plan(["BTCUSDT"], "spot", "klines", date(2024, 8, 31), date(2024, 10, 1),
                    today=TODAY, interval="1h")  # fmt: skip
    seen = [0, 0]

    def progress(size: int, files: int) -> None:
        seen[0] += size
        seen[1] += files

    cache = tmp_path / "cache"
    result = await download(archives, cache, base_url=site.url, progress=progress)
    assert result.paths == [cache / archive.path for archive in archives]
    assert [path.read_bytes() for path in result.paths] == [expected(a) for a in archives]
    assert (result.missing, result.failed, result.cached) == ([], [], 0)
    assert result.bytes_fetched == seen[0] == sum(len(expected(a)) for a in archives)
    assert seen[1] == 3
    for path in result.paths:
        checksum = path.with_name(path.name + ".CHECKSUM")
        assert checksum.read_text().endswith(f"  {path.name}\n")
        assert mode(path) == mode(checksum) == 0o600
    folders = [cache, *[p for p in cache.rglob("*") if p.is_dir()]]
    assert {mode(folder) for folder in folders} == {0o700}
    assert not list(cache.rglob("*.part"))


async def test_a_missing_day_and_a_404_are_reported_not_fatal(
    site: FakeVision, tmp_path: Path
) -> None:
    archives = [daily("2024-09-20"), daily("2024-09-21"), daily("2024-09-22"), daily("2024-12-02")]
    site.missing.add("BTCUSDT-1h-2024-09-21.zip")  # not listed that day
    site.missing.add("/" + archives[2].path)  # a 404 for the zip only, its checksum is there
    result = await fetch(site, tmp_path, archives)
    assert result.missing == archives[1:]  # 2024-12-02: not published yet
    assert result.failed == []
    assert result.paths == [tmp_path / archives[0].path]
    assert not (tmp_path / archives[2].path).exists()


async def test_a_month_not_published_yet_is_fetched_day_by_day(
    site: FakeVision, tmp_path: Path
) -> None:
    (september,) = plan(["BTCUSDT"], "um", "trades", date(2024, 9, 1), date(2024, 9, 30),
                        today=TODAY)  # fmt: skip
    site.inject(september.name + ".CHECKSUM", "missing")
    site.missing.add("BTCUSDT-trades-2024-09-30.zip")
    result = await fetch(site, tmp_path, [september])
    assert [path.name for path in result.paths] == [
        f"BTCUSDT-trades-2024-09-{day:02d}.zip" for day in range(1, 30)
    ]
    assert names(result.missing) == ["BTCUSDT-trades-2024-09-30.zip"]


@pytest.mark.parametrize(
    ("fault", "file"), [("truncated", ".zip"), ("bad_checksum", ".zip.CHECKSUM")]
)
async def test_a_checksum_mismatch_is_retried_once(
    site: FakeVision, tmp_path: Path, fault: str, file: str
) -> None:
    archive = daily("2024-09-21", "aggTrades", "um")
    site.inject(archive.name.removesuffix(".zip") + file, fault)  # type: ignore[arg-type]
    result = await fetch(site, tmp_path, [archive])
    assert result.paths == [tmp_path / archive.path]
    assert result.paths[0].read_bytes() == expected(archive)
    assert len(site.fetched()) == 2


@pytest.mark.parametrize(
    ("fault", "file"), [("truncated", ".zip"), ("bad_checksum", ".zip.CHECKSUM")]
)
async def test_a_second_mismatch_deletes_the_file_and_reports_it(
    site: FakeVision, tmp_path: Path, fault: str, file: str
) -> None:
    archive, other = daily("2024-09-21", "trades"), daily("2024-09-22", "trades")
    site.inject(archive.name.removesuffix(".zip") + file, fault, times=2)  # type: ignore[arg-type]
    result = await fetch(site, tmp_path, [archive, other])
    ((failed, reason),) = result.failed
    assert failed == archive
    assert "SHA-256" in reason
    assert "BTCUSDT-trades-2024-09-21.zip" in reason
    assert result.paths == [tmp_path / other.path]
    assert sorted(p.name for p in (tmp_path / archive.path).parent.iterdir()) == sorted(
        [other.name, other.name + ".CHECKSUM", f".{other.name}.verified"]
    )


async def test_a_garbled_checksum_file_is_a_mismatch_not_a_crash(
    site: FakeVision, tmp_path: Path
) -> None:
    once, twice = daily("2024-09-21"), daily("2024-09-22")
    site.inject(once.name + ".CHECKSUM", "garbled")
    site.inject(twice.name + ".CHECKSUM", "garbled", times=2)
    result = await fetch(site, tmp_path, [once, twice])
    assert result.paths == [tmp_path / once.path]
    ((failed, reason),) = result.failed
    assert failed == twice
    assert reason.startswith("BTCUSDT-1h-2024-09-22.zip.CHECKSUM is not '<sha256>  ")


async def test_a_busy_site_is_retried_with_backoff(site: FakeVision, tmp_path: Path) -> None:
    archive, hopeless, zip_only = daily("2024-09-21"), daily("2024-09-22"), daily("2024-09-23")
    site.inject(archive.name, "unavailable", times=2)
    site.inject(hopeless.name + ".CHECKSUM", "unavailable", times=3)
    site.inject(zip_only.name, "unavailable", times=3)
    result = await fetch(site, tmp_path, [archive, hopeless, zip_only], retries=2)
    assert result.paths == [tmp_path / archive.path]
    assert result.failed == [
        (hopeless, "BTCUSDT-1h-2024-09-22.zip.CHECKSUM: HTTP 503 Service Unavailable"),
        (zip_only, "BTCUSDT-1h-2024-09-23.zip: HTTP 503 Service Unavailable"),
    ]


async def test_a_cache_that_cannot_be_written_fails_each_archive_not_the_run(
    site: FakeVision, tmp_path: Path
) -> None:
    blocked = tmp_path / "cache"
    await asyncio.to_thread(blocked.write_text, "a file where the cache's folder should be")
    archives = [daily("2024-09-21"), daily("2024-09-22")]
    result = await fetch(site, blocked, archives)
    assert [failed for failed, _ in result.failed] == archives
    assert all("BTCUSDT-1h-2024-09-2" in reason for _, reason in result.failed)


async def test_slow_answers_time_out_and_are_retried(site: FakeVision, tmp_path: Path) -> None:
    site.slow_s = 1.0
    archive, hopeless = daily("2024-09-21"), daily("2024-09-22")
    site.inject(archive.name, "slow")
    site.inject(hopeless.name, "slow", times=3)
    result = await fetch(site, tmp_path, [archive, hopeless], timeout_s=0.2, retries=2)
    assert result.paths == [tmp_path / archive.path]
    assert result.paths[0].read_bytes() == expected(archive)
    ((failed, reason),) = result.failed
    assert failed == hopeless
    assert reason == "BTCUSDT-1h-2024-09-22.zip: timed out"
    assert site.fetched().count("/" + hopeless.path) == 3  # the first try and two retries


async def test_a_dropped_connection_is_retried(site: FakeVision, tmp_path: Path) -> None:
    archive = daily("2024-09-21", "bookTicker", "cm")
    site.inject(archive.name, "dropped")
    result = await fetch(site, tmp_path, [archive])
    assert result.failed == []
    assert result.paths[0].read_bytes() == expected(archive)
    assert result.bytes_fetched > len(expected(archive))  # the dropped half counted too
    site.inject(archive.name, "dropped", times=9)
    again = await fetch(site, tmp_path / "other", [archive], retries=1)
    assert "ClientPayloadError" in again.failed[0][1]


async def test_downloads_run_concurrently_within_the_bound(
    site: FakeVision, tmp_path: Path
) -> None:
    site.delay_s = 0.05
    archives = [daily(f"2024-09-{day:02d}") for day in range(1, 13)]
    result = await fetch(site, tmp_path, archives, concurrency=3)
    assert len(result.paths) == 12
    assert site.max_in_flight == 3


async def test_an_interrupted_download_resumes_without_fetching_verified_files_again(
    site: FakeVision, tmp_path: Path
) -> None:
    site.delay_s = 0.02
    archives = [daily(f"2024-09-{day:02d}", "trades") for day in range(1, 11)]
    task = asyncio.create_task(fetch(site, tmp_path, archives, concurrency=2))
    while len(site.fetched()) < 4:  # noqa: ASYNC110 - the server's request log, no event
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done = stats(tmp_path, "*.zip")
    assert 2 <= len(done) < 10
    assert stats(tmp_path, "*.part") == {}  # no half file left behind
    site.requests.clear()
    result = await fetch(site, tmp_path, archives, concurrency=2)
    assert result.paths == [tmp_path / archive.path for archive in archives]
    assert result.cached == len(done)
    assert sorted(site.fetched()) == sorted(
        "/" + a.path for a in archives if tmp_path / a.path not in done
    )
    for path, before in done.items():  # untouched
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    site.requests.clear()
    assert (await fetch(site, tmp_path, archives)).cached == 10
    assert site.requests == []


async def test_a_damaged_cached_file_is_fetched_again(site: FakeVision, tmp_path: Path) -> None:
    archive = daily("2024-09-21")
    (path,) = (await fetch(site, tmp_path, [archive])).paths
    path.write_bytes(b"damaged")
    result = await fetch(site, tmp_path, [archive])
    assert result.cached == 0
    assert path.read_bytes() == expected(archive)
    (path.parent / f".{path.name}.verified").unlink()  # files copied in: verified by hashing
    site.requests.clear()
    assert (await fetch(site, tmp_path, [archive])).cached == 1
    assert site.requests == []
