from __future__ import annotations

import msgspec

from marketdata.records import Bar, Tick
from sinks.writer import BAR_COLUMNS, TICK_COLUMNS, _bar_row, _tick_row
from tests.strategies import sample_bar, sample_tick


def test_a_records_fields_are_its_tables_columns_in_order() -> None:
    """The writer copies a record's field tuple as its row: a field added, removed or moved in
    Tick or Bar must be matched in the columns, or values would land in the wrong column."""
    assert [f.name for f in msgspec.structs.fields(Tick)] == [name for name, _ in TICK_COLUMNS]
    assert [f.name for f in msgspec.structs.fields(Bar)] == [name for name, _ in BAR_COLUMNS]


def test_rows_hold_each_field_under_its_column() -> None:
    tick = sample_tick(extras={"buyer_maker": True})
    bar = sample_bar(closed=False)
    assert dict(zip((n for n, _ in TICK_COLUMNS), _tick_row(tick), strict=True)) == {
        name: getattr(tick, name) for name, _ in TICK_COLUMNS
    }
    assert dict(zip((n for n, _ in BAR_COLUMNS), _bar_row(bar), strict=True)) == {
        name: getattr(bar, name) for name, _ in BAR_COLUMNS
    }
