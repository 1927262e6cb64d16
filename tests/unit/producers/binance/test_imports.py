"""The import loop over dump files, publishing to a fake broker (no network), and the command's
answers to bad input."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from marketdata.codec import decode
from marketdata.settings import Settings
from mdp.cli import cli
from producers.binance.imports import (
    ImportResult,
    Skipped,
    Source,
    _State,
    import_dumps,
    local_sources,
    read_pages,
)
from producers.binance.vision import Overrides, parse_name
from producers.publisher import Publisher
from tests.unit.producers.binance.vision_files import FIXTURES, SPOT_KLINES, SPOT_TRADES, UM_BOOK
from tests.unit.producers.test_backfill import TOPICS, Broker

_ROW = "51175358,17.80180000,5.69000000,101.29224200,1583709433583,True,True"


async def _import(
    broker: Broker, sources: Iterable[Source] | AsyncIterator[Source], *,
    progress: list[tuple[int, int]] | None = None, page_rows: int = 5000,
    overrides: Overrides | None = None,
) -> ImportResult:  # fmt: skip
    @asynccontextmanager
    async def opener() -> AsyncIterator[Publisher]:
        yield Publisher(cast(AIOKafkaProducer, broker), TOPICS, stage="binance.import",
                        max_records=500)  # fmt: skip

    return await import_dumps(
        Settings.from_env({}), sources, opener=opener, page_rows=page_rows,
        overrides=overrides or Overrides(),
        progress=None if progress is None else lambda rows, done: progress.append((rows, done)),
    )  # fmt: skip


def _published(broker: Broker) -> list[object]:
    return [record for topic, value, _ in broker.sent if topic != TOPICS.dlq
            for record in decode(value).records]  # fmt: skip


async def test_a_folder_of_every_kind_and_market_is_published_as_read() -> None:
    files = local_sources([FIXTURES])
    assert len(files) == 13
    broker = Broker()
    result = await _import(broker, files)
    expected = [record for path in files
                for page in read_pages(path, parse_name(path), _State())
                for record in page.records]  # fmt: skip
    # received_at differs between the two reads: compare everything else.
    key = lambda r: (r.key, r) if not hasattr(r, "received_at") else (r.key, r.price, r.size)  # noqa: E731
    assert sorted(map(repr, map(key, _published(broker)))) == sorted(map(repr, map(key, expected)))
    assert (result.published, result.rejected, result.files_read, result.verified) == (
        len(expected), 0, 13, 13)  # fmt: skip
    assert result.skipped == ()
    assert result.bytes_read == sum(f.stat().st_size for f in files)
    assert {topic for topic, _, _ in broker.sent} == {TOPICS.bars_raw, TOPICS.ticks_raw}
    assert result.summary(TOPICS).startswith(
        f"{len(expected)} records from 13 files (0.0 MB, 13 checksum-verified) published to "
        "t.md.bars.raw and t.md.ticks.raw")  # fmt: skip


async def test_rows_that_do_not_normalise_are_dead_letters_with_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    path.write_text(f"{_ROW}\n1,abc,1,1,1583709433583,True,True\n\n{_ROW.replace('5133', '')}\n")
    broker = Broker()
    result = await _import(broker, [path])
    assert (result.published, result.rejected) == (2, 1)
    [(raw, headers)] = broker.letters()
    assert raw == b"1,abc,1,1,1583709433583,True,True"
    assert headers["mdp.reason"] == b"BTCUSDT-trades-2024-03.csv:2: price: not a number: 'abc'"
    assert headers["mdp.origin"] == b"binance.vision"
    assert "; 1 malformed rows dead-lettered to t.md.dlq" in result.summary(TOPICS)


async def test_a_checksum_mismatch_skips_that_file_and_the_import_goes_on(tmp_path: Path) -> None:
    for archive in (SPOT_KLINES, SPOT_TRADES):
        shutil.copy(archive, tmp_path / archive.name)
        shutil.copy(f"{archive}.CHECKSUM", tmp_path / f"{archive.name}.CHECKSUM")
    damaged = tmp_path / SPOT_KLINES.name
    damaged.write_bytes(damaged.read_bytes() + b"\0")
    broker = Broker()
    result = await _import(broker, local_sources([tmp_path]))
    assert (result.files_read, result.verified, result.published) == (1, 1, 2)
    [skipped] = result.skipped
    assert skipped.name == "BTCUSDT-1m-2024-03.zip"
    assert skipped.reason.startswith("BTCUSDT-1m-2024-03.zip: SHA-256 ")
    assert {topic for topic, _, _ in broker.sent} == {TOPICS.ticks_raw}  # not a bar read
    assert "; 1 skipped: BTCUSDT-1m-2024-03.zip: SHA-256 " in result.summary(TOPICS)


async def test_files_reported_skipped_by_whoever_fetched_them_are_in_the_result() -> None:
    async def fetched() -> AsyncIterator[Source]:
        yield Skipped("BTCUSDT-trades-2024-03-02.zip", "404: not published (yet)")
        yield SPOT_TRADES

    result = await _import(Broker(), fetched())
    assert result.files_read == 1
    assert result.skipped == (Skipped("BTCUSDT-trades-2024-03-02.zip", "404: not published (yet)"),)
    assert result.summary(TOPICS).endswith(
        "; 1 skipped: BTCUSDT-trades-2024-03-02.zip: 404: not published (yet)")  # fmt: skip


async def test_a_damaged_archive_publishes_what_came_before_and_is_reported(
    tmp_path: Path,
) -> None:
    import zipfile  # noqa: PLC0415

    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-trades-2024-03.csv", "".join(
            _ROW.replace("51175358", str(n)) + "\n" for n in range(1, 50_001)))  # fmt: skip
    data = whole.read_bytes()
    cut = tmp_path / "BTCUSDT-trades-2024-03.zip"
    cut.write_bytes(data[: len(data) // 2] + bytes(100) + data[len(data) // 2 + 100 :])
    result = await _import(Broker(), [cut], page_rows=1000)
    [skipped] = result.skipped
    assert "BTCUSDT-trades-2024-03.zip: line " in skipped.reason
    assert "damaged or truncated" in skipped.reason
    assert 0 < result.published < 50_000
    assert result.files_read == 0


async def test_a_header_of_another_kind_skips_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    path.write_text("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                    "taker_buy_volume,taker_buy_quote_volume,ignore\n" + _ROW + "\n")  # fmt: skip
    result = await _import(Broker(), [path])
    [skipped] = result.skipped
    assert skipped.reason.startswith("BTCUSDT-trades-2024-03.csv: its header has 12 columns")
    assert result.published == 0


async def test_progress_counts_rows_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    path.write_text("".join(_ROW.replace("51175358", str(n)) + "\n" for n in range(1, 26)))
    seen: list[tuple[int, int]] = []
    result = await _import(Broker(), [path, UM_BOOK], progress=seen, page_rows=10)
    assert [rows for rows, _ in seen] == [10, 20, 25, 27]  # two quotes of the one bookTicker row
    assert seen[-1][1] == path.stat().st_size + UM_BOOK.stat().st_size
    assert [done for _, done in seen] == sorted(done for _, done in seen)
    assert result.published == 27


async def test_a_file_named_otherwise_is_read_with_the_options(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(_ROW + "\n")
    broker = Broker()
    result = await _import(broker, [path], overrides=Overrides(kind="trades", symbol="ETHBTC",
                                                                market="um"))  # fmt: skip
    assert result.published == 1
    [tick] = _published(broker)
    assert (tick.exchange, tick.symbol, tick.trade_id) == ("BINANCE-UM", "ETHBTC", "51175358")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "mdp: error: give the dump files or folders to import (PATH...)\n"),
        (["/no/such/dir"], "mdp: error: /no/such/dir: no such file or folder\n"),
        (["README.md"], "mdp: error: README.md: not a Binance dump name (SYMBOL-KIND-DATE or "
                        "SYMBOL-INTERVAL-DATE); say what it holds with --kind and --symbol\n"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_code_1(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["import", "binance-vision", *args])
    assert result.exit_code == 1
    assert result.stderr == message
    assert "Traceback" not in result.output


def test_a_folder_without_dumps_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    result = CliRunner().invoke(cli, ["import", "binance-vision", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == f"mdp: error: no .zip or .csv files in {tmp_path}\n"
