"""The import's columnar fast path against the row path, differentially: for the real-format
dump fixtures and for generated files of every kind (valid rows, and rows mutated field by
field with the fuzz values and tests/poison.py's fragments, odd line ends, bytes that are not
UTF-8, over-long lines), both readers publish the same Kafka messages, byte for byte and in the
same order, and the same dead letters with ``file:line: reason``; and the reader streams."""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.codec import decode
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from producers.backfill import BackfillResult, Page, publish_pages
from producers.binance.columns import BLOCK_BYTES, ENVELOPE_RECORDS, blocks
from producers.binance.dumps import RowPath
from producers.binance.imports import _State, local_sources, read_encoded, read_pages
from producers.binance.vision import MAX_LINE, DumpError, parse_name
from producers.publisher import Envelope, Publisher
from tests.poison import fragments
from tests.unit.producers.binance.test_dumps_fuzz import VALUES
from tests.unit.producers.binance.vision_files import FIXTURES, plain_copy
from tests.unit.producers.test_backfill import TOPICS, Broker

RECEIVED = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
Sent = list[tuple[str, bytes, dict[str, bytes]]]


async def _published(pages: Iterator[Page]) -> Sent:
    broker = Broker()

    @asynccontextmanager
    async def opener() -> AsyncIterator[Publisher]:
        yield Publisher(cast(AIOKafkaProducer, broker), TOPICS, stage="binance.import",
                        max_records=ENVELOPE_RECORDS)  # fmt: skip

    async def each() -> AsyncIterator[Page]:
        for page in pages:
            yield page

    asked = BackfillResult("binance.vision", "dump", RECEIVED, None)
    await publish_pages(Settings.from_env({}), asked, each(), stage="binance.import",
                        origin="binance.vision", gauge=lambda _: (0, 0), opener=opener)  # fmt: skip
    return broker.sent


def _records(sent: Sent) -> list[Tick | Bar]:
    return [record for topic, value, _ in sent if topic != TOPICS.dlq
            for record in decode(value).records]  # fmt: skip


def _both(
    path: Path, *, page_rows: int = 5000, block_bytes: int = BLOCK_BYTES
) -> tuple[Sent, Sent]:
    name = parse_name(path)
    rows = read_pages(path, name, _State(), page_rows=page_rows, received_at=RECEIVED)
    fast = read_encoded(path, name, _State(), page_rows=page_rows, received_at=RECEIVED,
                        block_bytes=block_bytes)  # fmt: skip
    return asyncio.run(_published(rows)), asyncio.run(_published(fast))


def _assert_same(path: Path, **options: int) -> Sent:
    by_rows, by_columns = _both(path, **options)
    # Field by field (msgspec structs compare every field, received_at included) ...
    assert _records(by_columns) == _records(by_rows)
    # ... and the very bytes, order and dead letters with their reasons.
    assert by_columns == by_rows
    return by_rows


FIXTURE_FILES = local_sources([FIXTURES])


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("block_bytes", [16, 200, BLOCK_BYTES])
def test_the_fixtures_give_what_the_row_path_gives(path: Path, block_bytes: int) -> None:
    sent = _assert_same(path, block_bytes=block_bytes)
    assert _records(sent)  # every fixture holds rows


def test_plain_csv_copies_of_the_fixtures_too(tmp_path: Path) -> None:
    for archive in FIXTURE_FILES:
        _assert_same(plain_copy(archive, tmp_path), block_bytes=64)


def test_a_file_of_several_blocks_with_a_small_first_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files larger than the first block (64 kB) and than a block: the header and the first
    row through the row path, the rest of the first block and every later block through the
    columns, and what both paths publish is the same."""
    folder = tmp_path / "data/futures/um/monthly"
    folder.mkdir(parents=True)
    lines = [HEADERS["klines"]] + [
        f"{1727000000000 + n * 60_000},{60000 + n % 997}.{n % 100:02d},{60100 + n % 997}.5,"
        f"{59900 + n % 997},{60050 + n % 997}.25,{n % 50 + 1}.{n:08d},"
        f"{1727000000000 + n * 60_000 + 59_999},{n * 3}.1,{n % 500},1.5,2.{n},0"
        for n in range(6000)
    ]  # fmt: skip
    path = folder / "BTCUSDT-1m-2024-09.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1m-2024-09.csv", "\r\n".join(lines) + "\r\n")
    assert len("\n".join(lines)) > 5 * 100_000
    for block_bytes in (100_000, BLOCK_BYTES):
        assert len(_records(_assert_same(path, block_bytes=block_bytes))) == 6000
    seen = _row_path_lines(monkeypatch)
    pages = list(read_encoded(path, parse_name(path), _State(), received_at=RECEIVED))
    assert sum(page.count for page in pages) == 6000
    assert seen == [2]  # line 1 is the header; line 2 sets the file's unit


# -- generated files --------------------------------------------------------------------------

HEADERS = {
    "klines": "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore",
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
                 "is_buyer_maker",
    "bookTicker": "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,"
                  "transaction_time,event_time",
}  # fmt: skip
NAMES = {
    "klines": "BTCUSDT-1m-2024-09.csv",
    "trades": "BTCUSDT-trades-2024-09.csv",
    "aggTrades": "BTCUSDT-aggTrades-2024-09-21.csv",
    "bookTicker": "BNBUSDT-bookTicker-2024-09-21.csv",
}
MARKETS = {"spot": "data/spot/daily", "um": "data/futures/um/daily", "cm": "data/futures/cm/daily"}

ids = (st.integers(0, 10**12) | st.integers(0, 2**63 - 1)).map(str)
_digits = st.integers(0, 99_999)
decimals = st.one_of(
    st.builds(lambda i, f, places: f"{i}.{f:0{places}d}"[: len(str(i)) + 1 + places],
              _digits, st.integers(0, 10**8 - 1), st.integers(1, 8)),
    st.integers(0, 10**6).map(str),
    st.sampled_from(["0.00000000", "0.00000001", "0.00000024", "0.000001", "0.00000010",
                     "0.000000", "00.5", "1.", ".5", "1E-8", "1e3", "5.0E+2", "+1.5", "0"]),
)  # fmt: skip


def times(unit: str) -> st.SearchStrategy[int]:
    scale = 1000 if unit == "us" else 1
    return st.integers(10**11 * scale, 4_102_444_799_999 * scale)


@st.composite
def rows(draw: st.DrawFn, kind: str, unit: str, futures: bool) -> list[str]:
    """A valid row of ``kind``: values of every shape the venue writes."""
    time = draw(times(unit))
    flag = draw(st.sampled_from(["True", "False", "true", "false"]))
    if kind == "klines":
        prices = sorted(draw(st.lists(decimals.filter(lambda d: d[0].isdigit() and "E" not in d
                                                      and "e" not in d), min_size=4, max_size=4)),
                        key=float)  # fmt: skip
        low, a, b, high = prices
        opened, close = (a, b) if draw(st.booleans()) else (b, a)
        close_time = time + draw(st.integers(0, 60_000))
        return [str(time), opened, high, low, close, draw(decimals), str(close_time),
                draw(decimals), draw(ids.map(lambda i: i[:18])), "1.0", "2.0", "0"]  # fmt: skip
    if kind == "bookTicker":
        return [draw(ids), draw(decimals), draw(decimals), draw(decimals), draw(decimals),
                str(time), str(time + draw(st.integers(0, 5)))]  # fmt: skip
    best = [] if futures else [draw(st.sampled_from(["True", "False"]))]
    if kind == "trades":
        return [draw(ids), draw(decimals), draw(decimals), "12.5", str(time), flag, *best]
    return [draw(ids), draw(decimals), draw(decimals), draw(ids), draw(ids), str(time), flag,
            *best]  # fmt: skip


_poison = fragments.map(lambda b: b.decode("utf-8", "surrogateescape"))
_values = st.sampled_from(list(VALUES.values())) | _poison


MUTATIONS = ["field", "field", "drop", "add", "empty", "blank", "long", "bytes", "unit", "caps"]


@st.composite
def lines(draw: st.DrawFn, kind: str, unit: str, futures: bool, valid: int) -> bytes:
    """One line with its end: a valid row, or one mutated the way files and attackers do."""
    row = draw(rows(kind, unit, futures))
    how = draw(st.sampled_from(["valid"] * valid + MUTATIONS))
    if how == "field":
        row[draw(st.integers(0, len(row) - 1))] = draw(_values)
    elif how == "drop":
        del row[draw(st.integers(0, len(row) - 1))]
    elif how == "add":
        row.insert(draw(st.integers(0, len(row))), draw(_values))
    elif how == "empty":
        row = []
    elif how == "blank":
        row = [" "]
    elif how == "long":
        row[-1] += "9" * draw(st.sampled_from([MAX_LINE - 100, MAX_LINE, 70_000]))
    elif how == "unit":
        at = {"klines": 0, "trades": 4, "aggTrades": 5, "bookTicker": 5}[kind]
        row[at] = str(int(row[at]) * 1000) if unit == "ms" else row[at][:-3]
    elif how == "caps":
        row = [field.upper() if field in {"True", "False", "true", "false"} else field
               for field in row]  # fmt: skip
    text = ",".join(row).encode("utf-8", "surrogateescape")
    if how == "bytes":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3\xa9", b"\x00", b"\xe2\x82"]))
            + text[at:]
        )
    if how == "valid" and valid > 6:
        return text + b"\n"
    return text + draw(st.sampled_from([b"\n"] * 8 + [b"\r\n", b"\r"]))


@st.composite
def dump_files(draw: st.DrawFn) -> tuple[str, str, bytes]:
    kind = draw(st.sampled_from(list(NAMES)))
    market = draw(st.sampled_from(list(MARKETS)))
    unit = draw(st.sampled_from(["ms", "us"]))
    futures = market != "spot"
    valid = draw(st.sampled_from([6, 100, 1000]))  # mutations: many, a few, hardly any
    data = b"".join(draw(st.lists(lines(kind, unit, futures, valid), min_size=1, max_size=30)))
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # no line end after the last row
    if futures:
        data = HEADERS[kind].encode() + b"\n" + data
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    return kind, market, data


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(dump_files(), st.sampled_from([40, 300, BLOCK_BYTES]), st.sampled_from([3, 7, 5000]),
       st.booleans())  # fmt: skip
def test_generated_files_give_what_the_row_path_gives(
    tmp_path_factory: pytest.TempPathFactory, file: tuple[str, str, bytes], block_bytes: int,
    page_rows: int, zipped: bool,
) -> None:  # fmt: skip
    kind, market, data = file
    folder = tmp_path_factory.mktemp("dumps") / MARKETS[market]
    folder.mkdir(parents=True)
    path = folder / NAMES[kind]
    if zipped:
        path = path.with_suffix(".zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(NAMES[kind], data)
    else:
        path.write_bytes(data)
    outcomes: list[object] = []
    for read in (read_pages, read_encoded):
        try:
            pages = list(read(path, parse_name(path), _State(), page_rows=page_rows,
                              received_at=RECEIVED, **_blocks(read, block_bytes)))  # fmt: skip
        except DumpError as exc:  # a header of another kind: the same for both
            outcomes.append(str(exc))
        else:
            sent = asyncio.run(_published(iter(pages)))
            outcomes.append((_records(sent), sent))
    assert outcomes[1] == outcomes[0]


def _blocks(read: object, block_bytes: int) -> dict[str, int]:
    return {"block_bytes": block_bytes} if read is read_encoded else {}


# -- the fast path does the work ----------------------------------------------------------------


def _clean_file(folder: Path, count: int) -> Path:
    path = folder / "BTCUSDT-trades-2024-09.csv"
    path.write_text("".join(
        f"{n},6{n % 10}000.0{n % 7},0.00{n % 9 + 1},1.5,1726876800{n % 1000:03d},"
        f"{'True' if n % 3 else 'false'},True\n" for n in range(1, count + 1)))  # fmt: skip
    return path


def test_clean_rows_do_not_go_through_the_row_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _clean_file(tmp_path, 2000)
    seen = _row_path_lines(monkeypatch)
    pages = list(read_encoded(path, parse_name(path), _State(), received_at=RECEIVED,
                              block_bytes=4096))  # fmt: skip
    assert seen == [1]  # the first line sets the file's unit; every other row is columnar
    assert sum(page.count for page in pages) == 2000
    assert all(len(page.envelopes) == 5000 // ENVELOPE_RECORDS for page in pages[:-1])


def test_a_damaged_archive_fails_at_the_same_line_after_the_same_pages(tmp_path: Path) -> None:
    whole = tmp_path / "whole.zip"
    text = "".join(f"{n},17.80180000,5.69000000,101.2922,1583709433583,True,True\n"
                   for n in range(1, 50_001))  # fmt: skip
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-trades-2024-03.csv", text)
    data = whole.read_bytes()
    cut = tmp_path / "BTCUSDT-trades-2024-03.zip"
    cut.write_bytes(data[: len(data) // 2] + bytes(100) + data[len(data) // 2 + 100 :])
    outcomes = []
    for read in (read_pages, read_encoded):
        pages: list[Page] = []
        with pytest.raises(DumpError) as failed:
            pages.extend(read(cut, parse_name(cut), _State(), page_rows=1000,
                              received_at=RECEIVED))  # fmt: skip
        outcomes.append((str(failed.value), asyncio.run(_published(iter(pages)))))
    assert "damaged or truncated" in outcomes[0][0]
    assert outcomes[1] == outcomes[0]
    assert 0 < len(_records(outcomes[0][1])) < 50_000


# -- blocks ---------------------------------------------------------------------------------------


def test_blocks_end_at_line_ends_and_hold_the_whole_text() -> None:
    text = b"".join(b"%d,%s\n" % (n, b"x" * (n % 50)) for n in range(500))
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
    found = list(blocks(iter(pieces), 100))
    assert b"".join(found) == text
    assert all(block.endswith(b"\n") for block in found)
    assert all(len(block) < 100 + 37 for block in found)


def test_the_first_block_is_small_and_the_others_are_cut_as_before() -> None:
    text = b"".join(b"%d,%s\n" % (n, b"x" * (n % 50)) for n in range(5000))
    pieces = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    found = list(blocks(iter(pieces), 20_000, first=300))
    assert b"".join(found) == text
    assert all(block.endswith(b"\n") for block in found)
    assert 300 - 60 < len(found[0]) <= 300  # the last line end within its first 300 bytes
    assert all(len(block) < 20_000 + 2 * 4096 for block in found)
    # No line end within ``first`` bytes: the block ends at the last line end there is.
    long_first = b"9" * 500 + b"\n" + text
    found = list(blocks(iter([long_first[i : i + 4096] for i in range(0, len(long_first), 4096)]),
                        20_000, first=300))  # fmt: skip
    assert b"".join(found) == long_first
    assert found[0] == long_first[: long_first.rfind(b"\n", 0, 4096) + 1]


def test_blocks_are_read_as_they_are_asked_for() -> None:
    """Memory stays flat: when block k is handed over, only the pieces of about k + 1 blocks
    have been read, whatever the size of the file."""
    read = [0]

    def endless() -> Iterator[bytes]:
        while True:
            read[0] += 1
            yield b"1,2,3\n" * 10  # 60 bytes

    for number, _ in enumerate(blocks(endless(), 600), start=1):
        assert read[0] <= number * 10 + 1
        if number == 50:
            break


def test_a_line_longer_than_a_block_keeps_its_beginning_only() -> None:
    long_line = b"7" * 200_000 + b"\n"
    pieces = [long_line[i : i + 8192] for i in range(0, len(long_line), 8192)]
    found = list(blocks(iter([b"1,2\n", *pieces, b"3,4\n"]), 64))
    assert found[0] == b"1,2\n"
    assert found[1] == b"7" * (4 * MAX_LINE + 4) + b"\n"
    assert found[2:] == [b"3,4\n"]


# -- the publisher ----------------------------------------------------------------------------


async def test_an_encoded_envelope_is_sent_after_what_is_buffered_for_its_instrument() -> None:
    from tests.strategies import sample_tick  # noqa: PLC0415

    broker = Broker()
    publisher = Publisher(cast(AIOKafkaProducer, broker), TOPICS, stage="s", max_records=500)
    tick = sample_tick()
    key = instrument_key(tick.exchange, tick.symbol)
    await publisher.add([tick])
    value = b'{"kind":"ticks","v":1,"records":[]}'
    await publisher.add_encoded(Envelope("ticks", key, value, 3))
    assert [(topic, sent) for topic, sent, _ in broker.sent][1] == (TOPICS.ticks_raw, value)
    assert decode(broker.sent[0][1]).records == [tick]
    assert publisher.sent_records == 4


def test_bars_whose_prices_floats_cannot_order_go_through_the_row_path(tmp_path: Path) -> None:
    """Open, high, low and close are ordered as floats where the floats differ, as text where
    the texts are equal; otherwise (equal floats of different texts) the row path decides."""
    rest = "1704067259999,1.0,1,1.0,2.0,0"
    rows = [
        f"1704067200000,61200.00000000,61200.00000000,61100.00000000,61150.00000000,1.5,{rest}",
        f"1704067260000,61200.0,61200.00,61100.0,61150.0,1.5,{rest}",  # open == high, not as text
        f"1704067320000,0.10000000000000001,0.1,0.1,0.1,1.5,{rest}",  # open > high, equal floats
        f"1704067380000,61300.0,61200.0,61100.0,61150.0,1.5,{rest}",  # open > high
    ]
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_text("\n".join(rows) + "\n")
    sent = _assert_same(path, block_bytes=16)
    assert [bar.open for bar in _records(sent)] == [Decimal("61200"), Decimal("61200")]  # type: ignore[union-attr]
    reasons = [headers["mdp.reason"] for topic, _, headers in sent if topic == TOPICS.dlq]
    assert [reason.split(b":")[1] for reason in reasons] == [b"3", b"4"]


def _row_path_lines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The line numbers the row path is handed from now on, in order."""
    seen: list[int] = []
    line = RowPath.line

    def counted(self: RowPath, found: tuple[int, str, bool]) -> object:
        seen.append(found[0])
        return line(self, found)

    monkeypatch.setattr(RowPath, "line", counted)
    return seen
