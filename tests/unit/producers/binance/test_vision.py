"""Binance dump files: names to (market, kind, symbol, interval, period), the streaming reader,
and checksums."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import pytest

from producers.binance import vision
from producers.binance.vision import (
    MAX_LINE,
    ChecksumMismatch,
    DumpError,
    DumpName,
    DumpReader,
    Overrides,
    parse_name,
    verify_checksum,
)
from tests.unit.producers.binance.vision_files import (
    CM_BOOK,
    CM_KLINES,
    SPOT_KLINES,
    SPOT_TRADES,
    UM_BOOK,
    UM_TRADES,
    csv_rows,
    member_text,
    plain_copy,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("BTCUSDT-1m-2024-09.zip", DumpName("spot", "klines", "BTCUSDT", "1m", "2024-09")),
        ("BTCUSDT-1s-2024-09-21.zip", DumpName("spot", "klines", "BTCUSDT", "1s", "2024-09-21")),
        ("BTCUSDT-1mo-2024-09.zip", DumpName("spot", "klines", "BTCUSDT", "1M", "2024-09")),
        ("BTCUSDT-12h-2024-09.csv", DumpName("spot", "klines", "BTCUSDT", "12h", "2024-09")),
        ("BTCUSDT-trades-2024-09.csv", DumpName("spot", "trades", "BTCUSDT", None, "2024-09")),
        ("BTCUSDT-aggTrades-2024-09-21.zip",
         DumpName("spot", "aggTrades", "BTCUSDT", None, "2024-09-21")),
        ("BTCUSDT-bookTicker-2024-09-21.zip",
         DumpName("spot", "bookTicker", "BTCUSDT", None, "2024-09-21")),
        ("data/spot/daily/trades/ETHBTC/ETHBTC-trades-2024-09-21.zip",
         DumpName("spot", "trades", "ETHBTC", None, "2024-09-21")),
        ("/x/data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-09.zip",
         DumpName("um", "klines", "BTCUSDT", "1h", "2024-09")),
        ("data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-09-21.zip",
         DumpName("um", "bookTicker", "BTCUSDT", None, "2024-09-21")),
        ("data/futures/cm/monthly/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-2024-09.zip",
         DumpName("cm", "aggTrades", "BTCUSD_PERP", None, "2024-09")),
        ("data/futures/cm/daily/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2024-09-21.csv",
         DumpName("cm", "trades", "BTCUSD_PERP", None, "2024-09-21")),
    ],
)  # fmt: skip
def test_a_dump_name_says_what_the_file_holds(path: str, expected: DumpName) -> None:
    assert parse_name(Path(path)) == expected


def test_the_exchange_tells_futures_from_spot() -> None:
    exchanges = [parse_name(Path(p)).exchange for p in (
        "BTCUSDT-1m-2024-09.zip",
        "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-09.zip",
        "data/futures/cm/monthly/klines/BTCUSD_PERP/1m/BTCUSD_PERP-1m-2024-09.zip")]  # fmt: skip
    assert exchanges == ["BINANCE", "BINANCE-UM", "BINANCE-CM"]


def test_options_override_the_name_and_the_folder() -> None:
    path = Path("data/futures/um/daily/x/export.csv")
    name = parse_name(path, Overrides(market="cm", kind="klines", symbol="ethusdt", interval="5m"))
    assert name == DumpName("cm", "klines", "ETHUSDT", "5m", "")
    assert parse_name(Path("BTCUSDT-1m-2024-09.zip"), Overrides(market="um")).market == "um"
    assert parse_name(Path("BTCUSDT-1m-2024-09.zip"), Overrides(interval="1h")).interval == "1h"
    trades = parse_name(Path("export.csv"), Overrides(kind="trades", symbol="BTCUSDT"))
    assert trades == DumpName("spot", "trades", "BTCUSDT", None, "")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("export.csv", r"export\.csv: not a Binance dump name .* --kind and --symbol"),
        ("BTCUSDT-markPriceKlines-2024-09.zip", r"not a Binance dump name"),
        ("BTCUSDT-7m-2024-09.zip", r"not a Binance dump name"),
        ("btc usdt-trades-2024-09.zip", r"no Binance symbol in the name"),
    ],
)
def test_a_name_that_says_nothing_is_an_error_naming_the_file(path: str, message: str) -> None:
    with pytest.raises(DumpError, match=message):
        parse_name(Path(path))


def test_klines_without_an_interval_are_an_error() -> None:
    with pytest.raises(DumpError, match=r"klines need an interval"):
        parse_name(Path("export.csv"), Overrides(kind="klines", symbol="BTCUSDT"))
    with pytest.raises(DumpError, match=r"klines need an interval"):
        parse_name(Path("BTCUSDT-1m-2024-09.zip"), Overrides(interval="2m"))


def _read(path: Path) -> tuple[list[str] | None, list[tuple[int, str, bool]]]:
    with DumpReader(path) as reader:
        lines = list(reader.lines())
        return reader.header, lines


def test_spot_archives_have_no_header_and_every_line_is_a_row() -> None:
    header, lines = _read(SPOT_KLINES)
    assert header is None
    assert lines == [(n, text, False) for n, text in
                     enumerate(member_text(SPOT_KLINES).splitlines(), 1)]  # fmt: skip


def test_futures_archives_begin_with_a_header_which_is_no_row() -> None:
    header, lines = _read(UM_TRADES)
    assert header == ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
    assert lines == [(2, ",".join(csv_rows(UM_TRADES)[0]), False)]


@pytest.mark.parametrize("archive", [SPOT_TRADES, UM_BOOK, CM_KLINES])
def test_a_plain_csv_reads_as_its_archive(archive: Path, tmp_path: Path) -> None:
    assert _read(plain_copy(archive, tmp_path)) == _read(archive)


def test_crlf_line_ends_a_bom_and_blank_lines_are_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    rows = [",".join(row) for row in csv_rows(SPOT_TRADES)]
    path.write_bytes(("\ufeff" + rows[0] + "\r\n\r\n" + rows[1] + "\r\n").encode())
    assert _read(path) == (None, [(1, rows[0], False), (3, rows[1], False)])


def test_a_line_too_long_is_reported_alone_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    rows = [",".join(row) for row in csv_rows(SPOT_TRADES)]
    path.write_text(rows[0] + "\n" + "9" * (MAX_LINE * 3 + 5) + "\n" + rows[1] + "\n")
    assert _read(path) == (None, [(1, rows[0], False), (2, "9" * MAX_LINE, True),
                                  (3, rows[1], False)])  # fmt: skip


def test_bytes_that_are_not_utf8_reach_the_row_as_they_came(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    path.write_bytes(b"1,\xff\xfe,1,1,1583709433583,True,True\n")
    _, [(number, text, cut)] = _read(path)
    assert (number, cut) == (1, False)
    assert text.encode("utf-8", "surrogateescape") == b"1,\xff\xfe,1,1,1583709433583,True,True"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_an_archive_that_is_not_one_csv_is_an_error_naming_it(tmp_path: Path) -> None:
    two = _zip(tmp_path / "BTCUSDT-trades-2024-03.zip", {"a.csv": b"", "b.csv": b""})
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-03\.zip: .* holds 2 files"):
        DumpReader(two)
    junk = tmp_path / "BTCUSDT-trades-2024-04.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-04\.zip: not a readable zip"):
        DumpReader(junk)


def test_a_truncated_archive_is_an_error_naming_it(tmp_path: Path) -> None:
    whole = _zip(tmp_path / "whole.zip", {"BTCUSDT-trades-2024-03.csv": b"1,2,3\n" * 50_000})
    cut = tmp_path / "BTCUSDT-trades-2024-03.zip"
    data = whole.read_bytes()
    # The central directory kept, the compressed data damaged in the middle.
    cut.write_bytes(data[:200] + bytes(len(data) - 400) + data[-200:])
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-03\.zip: "), DumpReader(cut) as r:
        list(r.lines())


def test_a_checksum_beside_the_archive_is_verified(tmp_path: Path) -> None:
    archive = tmp_path / SPOT_KLINES.name
    archive.write_bytes(SPOT_KLINES.read_bytes())
    assert verify_checksum(archive) is False  # none beside it
    listed = tmp_path / (archive.name + ".CHECKSUM")
    listed.write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    assert verify_checksum(archive) is True
    assert verify_checksum(CM_BOOK) is True  # the fixture's own, written as Binance writes it


def test_a_checksum_mismatch_is_an_error_naming_the_file(tmp_path: Path) -> None:
    archive = tmp_path / SPOT_KLINES.name
    archive.write_bytes(SPOT_KLINES.read_bytes() + b"\0")
    listed = tmp_path / (archive.name + ".CHECKSUM")
    listed.write_text((SPOT_KLINES.parent / listed.name).read_text())
    with pytest.raises(ChecksumMismatch, match=r"BTCUSDT-1m-2024-03\.zip: SHA-256 [0-9a-f]{64} "
                       r"does not match BTCUSDT-1m-2024-03\.zip\.CHECKSUM"):  # fmt: skip
        verify_checksum(archive)
    listed.write_text("not a checksum\n")
    with pytest.raises(ChecksumMismatch, match=r"CHECKSUM: not a SHA-256 checksum file"):
        verify_checksum(archive)


def test_a_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "BTCUSDT-trades-2024-03.csv"
    folder.mkdir()  # opening a folder fails as an unreadable file does, also as root
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-03\.csv: cannot be read: "):
        DumpReader(folder)
    archive = tmp_path / "BTCUSDT-trades-2024-04.zip"
    archive.mkdir()
    (tmp_path / "BTCUSDT-trades-2024-04.zip.CHECKSUM").write_text("0" * 64 + "  x\n")
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-04\.zip: cannot be read: "):
        verify_checksum(archive)


# -- inflating --------------------------------------------------------------------------------


def _member(path: Path) -> bytes:
    with DumpReader(path) as reader:
        return b"".join(reader.pieces())


def test_isal_inflates_the_same_bytes_as_zlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _zip(tmp_path / "BTCUSDT-trades-2024-03.zip", {"BTCUSDT-trades-2024-03.csv": b"".join(
        b"%d,6%d.%08d,0.001,1.5,1709251200%03d,True,True\n" % (n, n % 9, n, n % 1000)
        for n in range(100_000))})  # fmt: skip
    for path in (SPOT_KLINES, UM_BOOK, big):
        with zipfile.ZipFile(path) as archive, archive.open(archive.infolist()[0]) as member:
            assert vision.faster_inflate(member) is True  # ISA-L is installed with the project
            assert member.read() == member_text(path).encode() == archive.read(member.name)
        assert _member(path) == member_text(path).encode()
    monkeypatch.setattr(vision, "_isal_inflater", None)  # as without ISA-L: zlib inflates
    with zipfile.ZipFile(big) as archive, archive.open(archive.infolist()[0]) as member:
        assert vision.faster_inflate(member) is False
    assert _member(big) == member_text(big).encode()


def test_a_member_stored_uncompressed_stays_with_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("BTCUSDT-trades-2024-03.csv", b"1,2,3\n" * 10)
    with zipfile.ZipFile(path) as archive, archive.open(archive.infolist()[0]) as member:
        assert vision.faster_inflate(member) is False
    assert _member(path) == b"1,2,3\n" * 10


@pytest.mark.parametrize("isal", [True, False])
def test_a_damaged_stream_or_crc_is_an_error_naming_the_file_with_either_inflater(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isal: bool
) -> None:
    if not isal:
        monkeypatch.setattr(vision, "_isal_inflater", None)
    whole = _zip(tmp_path / "whole.zip", {"BTCUSDT-trades-2024-03.csv": b"1,2,3\n" * 50_000})
    data = whole.read_bytes()
    damaged = tmp_path / "BTCUSDT-trades-2024-03.zip"
    damaged.write_bytes(data[:200] + bytes(len(data) - 400) + data[-200:])
    with pytest.raises(DumpError, match=r"BTCUSDT-trades-2024-03\.zip: line \d+: the archive is "
                       "damaged or truncated"), DumpReader(damaged) as reader:  # fmt: skip
        list(reader.lines())
    # A stream that inflates but to other bytes: zipfile's CRC-32 check, ISA-L or not.
    text = b"1,2,3\n" * 10
    raw = _zip(tmp_path / "crc.zip", {"BTCUSDT-trades-2024-03.csv": text}).read_bytes()
    wrong = zlib.crc32(b"other").to_bytes(4, "little")
    right = zlib.crc32(text).to_bytes(4, "little")
    damaged.write_bytes(raw.replace(right, wrong))
    with (
        pytest.raises(DumpError, match=r"damaged or truncated: Bad CRC-32"),
        DumpReader(damaged) as reader,
    ):
        list(reader.lines())
