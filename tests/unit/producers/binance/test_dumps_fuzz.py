"""Every dump row normaliser and the file reader are total: any single-field mutation of a real
dump row (Binance's documented sample rows, tests/fixtures/binance_vision), any line and any
bytes give records, a reject with its reason, or a DumpError naming the file; never another
exception."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.codec import encode_bars, encode_ticks
from marketdata.epoch import Unit
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.binance.dumps import normalise_row
from producers.binance.imports import _State, read_pages
from producers.binance.vision import DumpError, DumpName, parse_name
from tests.unit.producers.binance.vision_files import (
    CM_BOOK,
    SPOT_AGG,
    SPOT_KLINES,
    SPOT_TRADES,
    UM_AGG,
    UM_BOOK,
    UM_KLINES,
    UM_TRADES,
    US_TRADES,
    csv_rows,
)

RECEIVED = datetime(2026, 12, 1, tzinfo=UTC)
ARCHIVES = (SPOT_KLINES, SPOT_TRADES, SPOT_AGG, UM_KLINES, UM_TRADES, UM_AGG, UM_BOOK, CM_BOOK,
            US_TRADES)  # fmt: skip
# (name, row, the unit of its file) for the first row of each archive.
ROWS: Final[list[tuple[DumpName, list[str], Unit]]] = [
    (parse_name(a), csv_rows(a)[0], "us" if a == US_TRADES else "ms") for a in ARCHIVES
]

# What a CSV field could wrongly hold, as text: other types, huge values, other time units.
VALUES: Final = {
    "empty": "", "space": " ", "negative": "-1", "zero": "0", "float": "1.5", "word": "abc",
    "NaN": "NaN", "Infinity": "-Infinity", "exponent": "1e999999", "hex": "0x10",
    "underscores": "1_000", "arabic digits": "١٢٣", "bool": "True", "lower bool": "false",
    "null": "null", "json list": "[1,2]", "json object": '{"a":1}', "NUL": "a\x00b",
    "surrogate (undecodable byte)": "\udcff", "quoted": '"1.0"', "huge int": "9" * 30,
    "int of 4000 digits": "9" * 4000, "long decimal": "1." + "7" * 3000, "big id": str(2**64),
    "seconds": "1709294400", "milliseconds": "1709294400000", "microseconds": "1709294400000000",
    "nanoseconds": "1709294400000000000", "picoseconds": "1709294400000000000000",
    "year 1960 ms": "-315619200000", "year 2200 ms": "7258118400000",
}  # fmt: skip


def outcome(name: DumpName, row: list[str], unit: Unit) -> str:
    """``records`` or ``invalid``; anything else raises from here. Records must also encode,
    since the publisher encodes them next."""
    try:
        records = normalise_row(name, row, unit, RECEIVED)
    except InvalidRecord:
        return "invalid"
    ticks = [r for r in records if isinstance(r, Tick)]
    bars = [r for r in records if isinstance(r, Bar)]
    assert len(ticks) + len(bars) == len(records) > 0
    if ticks:
        encode_ticks(ticks)
    if bars:
        encode_bars(bars)
    return "records"


def mutations() -> Iterator[tuple[DumpName, str, list[str], Unit]]:
    for name, row, unit in ROWS:
        for index in range(len(row)):
            for kind, value in VALUES.items():
                yield name, f"{name.kind}[{index}] = {kind}", [*row[:index], value,
                                                               *row[index + 1 :]], unit  # fmt: skip
            yield name, f"{name.kind}[{index}] missing", row[:index] + row[index + 1 :], unit
            yield name, f"{name.kind}[{index}] doubled", [*row[: index + 1], *row[index:]], unit
        yield name, f"{name.kind} extra field", [*row, "x"], unit
        yield name, f"{name.kind} no fields", [], unit
        units: tuple[Unit, ...] = ("s", "ms", "us", "ns")
        for other in units:
            yield name, f"{name.kind} in unit {other}", row, other


def test_every_single_field_mutation_gives_records_or_invalid_record() -> None:
    crashes: list[str] = []
    outcomes = {"records": 0, "invalid": 0}
    for name, description, row, unit in mutations():
        try:
            outcomes[outcome(name, row, unit)] += 1
        except Exception as exc:  # any other exception is the failure reported
            crashes.append(f"{description}: {type(exc).__name__}: {exc!s:.120}")
    total = len(crashes) + sum(outcomes.values())
    assert total > 2400  # every field of the nine rows, with every kind of value
    assert crashes == [], f"{len(crashes)} of {total} mutations crashed:\n" + "\n".join(crashes)
    assert outcomes["invalid"] > outcomes["records"] > 0


_fields = (
    st.text(max_size=30) | st.integers().map(str) | st.floats().map(repr)
    | st.sampled_from(list(VALUES.values()))
    | st.integers(min_value=10**9, max_value=10**20).map(str)
)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[DumpName, list[str], Unit]:
    name, row, unit = draw(st.sampled_from(ROWS))
    row = list(row)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        index = draw(st.integers(0, max(0, len(row) - 1)))
        if how == "remove" and row:
            del row[index]
        elif how == "add":
            row.insert(index, draw(_fields))
        elif row:
            row[index] = draw(_fields)
    return name, row, unit


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzzed_rows_give_records_or_invalid_record(case: tuple[DumpName, list[str], Unit]) -> None:
    assert outcome(*case) in {"records", "invalid"}


def _read_all(path: Path) -> tuple[int, int]:
    """(records, rejected) of a file; (-1, -1) when it is refused as a whole by an error naming
    it, (-2, -2) by one that does not."""
    try:
        pages = list(read_pages(path, parse_name(path), _State(), received_at=RECEIVED))
    except DumpError as exc:
        named = path.name in str(exc)
        return (-1, -1) if named else (-2, -2)
    return sum(len(p.records) for p in pages), sum(len(p.rejected) for p in pages)


_real_lines = st.sampled_from([",".join(row) for a in ARCHIVES for row in csv_rows(a)])
_line = _real_lines | st.text(max_size=200) | _real_lines.map(lambda line: line[: len(line) // 2])
_endings = st.sampled_from(["\n", "\r\n", "\r", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.tuples(_line, _endings), max_size=8),
       junk=st.binary(max_size=64), archive=st.booleans())  # fmt: skip
def test_any_lines_and_bytes_in_a_dump_file_give_records_rejects_or_a_dump_error(
    lines: list[tuple[str, str]], junk: bytes, archive: bool
) -> None:
    data = "".join(line + end for line, end in lines).encode("utf-8", "surrogatepass") + junk
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "BTCUSDT-trades-2024-03.csv"
        path.write_bytes(data)
        if archive:
            zipped = path.with_suffix(".zip")
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as opened:
                opened.writestr(path.name, data)
            path = zipped
        records, rejected = _read_all(path)
    assert records >= 0 or (records, rejected) == (-1, -1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archive=st.sampled_from(ARCHIVES), data=st.data())
def test_a_damaged_archive_gives_records_rejects_or_a_dump_error(
    archive: Path, data: st.DataObject
) -> None:
    original = archive.read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / archive.name
        path.write_bytes(bytes(damaged[:cut]) if data.draw(st.booleans()) else bytes(damaged))
        records, rejected = _read_all(path)
    assert records >= 0 or (records, rejected) == (-1, -1)
