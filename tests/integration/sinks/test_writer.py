"""BatchWriter against the database: the fast path (a straight COPY in a savepoint) and the
staged upsert it falls back to store the same rows under the same rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import msgspec
import psycopg
import pytest

from marketdata.database import connect
from marketdata.records import Bar
from marketdata.settings import Settings
from sinks.writer import FAST_PATH_PAUSE, AnyConnection, BatchWriter
from tests.integration.sinks.support import make_bar, make_ticks
from tests.strategies import sample_tick


@pytest.fixture
async def conn(sink_settings: Settings) -> AsyncIterator[AnyConnection]:
    connection = await connect(sink_settings.database)
    try:
        yield connection
    finally:
        await connection.close()


def _bars(settings: Settings) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database) as c:
        return c.execute(
            "SELECT timestamp, close, closed, trade_count FROM market_data_ohlcv ORDER BY 1"
        ).fetchall()


async def test_new_bars_take_the_fast_path_and_stored_ones_the_upsert_rules(
    sink_settings: Settings, conn: AnyConnection
) -> None:
    writer = BatchWriter()
    await writer.prepare(conn)
    first = [make_bar(m, closed=m < 2, close="101") for m in range(3)]
    result = await writer.write(conn, [], first)
    assert (result.bars_staged, result.bars_written) == (3, 3)
    # Minute 0 is closed: a live replay leaves it; minute 1 the same version: nothing written;
    # minute 2 live, now closed: replaced; minute 3 new. A stored key fails the fast path.
    second = [
        make_bar(0, closed=False, close="100"),
        make_bar(1, closed=True, close="101"),
        make_bar(2, closed=True, close="99.5"),
        make_bar(3, closed=False, close="100.5"),
    ]
    result = await writer.write(conn, [], second)
    assert (result.bars_staged, result.bars_written) == (4, 2)
    t0 = first[0].timestamp
    assert _bars(sink_settings) == [
        (t0, Decimal("101"), True, 40),
        (t0 + timedelta(minutes=1), Decimal("101"), True, 40),
        (t0 + timedelta(minutes=2), Decimal("99.5"), True, 40),
        (t0 + timedelta(minutes=3), Decimal("100.5"), False, 40),
    ]


def _derived(minute: int, *, closed: bool = True, close: str = "101", vwap: str = "100.7") -> Bar:
    return msgspec.structs.replace(
        make_bar(minute, closed=closed, close=close), source="derived.trades",
        vwap=Decimal(vwap), trade_count=39,
    )  # fmt: skip


def _by_source(settings: Settings) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database) as c:
        return c.execute(
            "SELECT timestamp, source, close, closed, trade_count, vwap FROM market_data_ohlcv"
            " ORDER BY timestamp, source"
        ).fetchall()


@pytest.mark.parametrize("paused", [False, True])
async def test_a_derived_bar_and_the_venue_bar_of_the_same_minute_are_both_stored(
    sink_settings: Settings, conn: AnyConnection, paused: bool
) -> None:
    writer = BatchWriter()
    await writer.prepare(conn)
    if paused:  # the staged upsert from the start, not the fast path
        await writer.write(conn, [], [make_bar(9)])
        await writer.write(conn, [], [make_bar(9)])
    # One batch holding both series of minute 0: neither replaces the other.
    result = await writer.write(conn, [], [make_bar(0, closed=False), _derived(0, closed=False)])
    assert (result.bars_staged, result.bars_written) == (2, 2)
    # Each series keeps its own upsert rules: the derived bar closes and is revised, the venue's
    # closes; a live replay of the closed venue bar changes nothing.
    await writer.write(conn, [], [_derived(0, close="100.5", vwap="100.6")])
    await writer.write(conn, [], [make_bar(0, close="101.5")])
    result = await writer.write(conn, [], [make_bar(0, closed=False, close="100"),
                                           _derived(0, close="100.5", vwap="100.65")])  # fmt: skip
    assert result.bars_written == 1
    t0 = make_bar(0).timestamp
    rows = [row for row in _by_source(sink_settings) if row[0] == t0]
    assert rows == [
        (t0, "binance.kline", Decimal("101.5"), True, 40, None),
        (t0, "derived.trades", Decimal("100.5"), True, 39, Decimal("100.65")),
    ]


async def test_after_a_failed_fast_path_bars_go_staged_for_a_while_with_the_same_result(
    sink_settings: Settings, conn: AnyConnection
) -> None:
    writer = BatchWriter()
    await writer.prepare(conn)
    await writer.write(conn, [], [make_bar(0, closed=False, close="100")])
    # Live updates of one bar: each after the first conflicts with the stored version.
    closes = [str(Decimal("100") + Decimal(n) / 10) for n in range(1, FAST_PATH_PAUSE + 3)]
    for close in closes:
        result = await writer.write(conn, [], [make_bar(0, closed=False, close=close)])
        assert (result.bars_staged, result.bars_written) == (1, 1)
    # New bars while the fast path is paused, and after: stored all the same.
    fresh: list[Bar] = [make_bar(m) for m in range(1, FAST_PATH_PAUSE + 4)]
    for bar in fresh:
        result = await writer.write(conn, [], [bar])
        assert (result.bars_staged, result.bars_written) == (1, 1)
    rows = _bars(sink_settings)
    assert rows[0][1:3] == (Decimal(closes[-1]), False)
    assert len(rows) == 1 + len(fresh)


async def test_extras_are_stored_as_the_json_they_hold(
    sink_settings: Settings, conn: AnyConnection
) -> None:
    extras = [
        {"buyer_maker": True},
        {"ü": "naïve ✓ 𝄞", "nested": {"list": [1, -(2**63), 2**63 - 1, 0.5, None, False]}},
        {"text": 'quote " backslash \\ newline \n tab \t'},
    ]
    ticks = [sample_tick(trade_id=str(n), extras=value) for n, value in enumerate(extras)]
    ticks.append(sample_tick(trade_id="none", extras=None))
    writer = BatchWriter()
    await writer.prepare(conn)
    await writer.write(conn, ticks, [])
    with psycopg.connect(sink_settings.database) as c:
        stored: dict[str, object] = dict(
            c.execute("SELECT trade_id, extras FROM market_data_ticks").fetchall()
        )
        # jsonb normalises: the same text as the standard library's encoding gives, once stored.
        same = c.execute(
            "SELECT bool_and(extras = %s::jsonb) FROM market_data_ticks WHERE trade_id = '1'",
            (json.dumps(extras[1]),),
        ).fetchone()
    assert stored == {"0": extras[0], "1": extras[1], "2": extras[2], "none": None}
    assert same == (True,)


async def test_a_tick_batch_with_a_stored_key_stores_the_rest_once(
    sink_settings: Settings, conn: AnyConnection
) -> None:
    ticks = make_ticks(300, symbols=2)
    writer = BatchWriter()
    await writer.prepare(conn)
    first = await writer.write(conn, ticks[:100], [])
    again = await writer.write(conn, ticks[50:] + ticks[250:], [])
    assert (first.ticks_staged, first.ticks_inserted) == (100, 100)
    assert (again.ticks_staged, again.ticks_inserted) == (300, 200)
    with psycopg.connect(sink_settings.database) as c:
        row = c.execute(
            "SELECT count(*), count(DISTINCT trade_id) FROM market_data_ticks"
        ).fetchone()
    assert row == (300, 300)


async def test_after_a_replayed_tick_batch_ticks_go_staged_for_a_while_with_the_same_result(
    sink_settings: Settings, conn: AnyConnection
) -> None:
    ticks = make_ticks(40 * (FAST_PATH_PAUSE + 3), symbols=2)
    writer = BatchWriter()
    await writer.prepare(conn)
    await writer.write(conn, ticks[:40], [])
    # A replay (fails the fast path), then new batches, half of each one replayed again.
    replay = await writer.write(conn, ticks[:40], [])
    assert (replay.ticks_staged, replay.ticks_inserted) == (40, 0)
    for start in range(40, len(ticks), 40):
        batch = ticks[start : start + 40] + ticks[start - 20 : start]
        result = await writer.write(conn, batch, [])
        assert (result.ticks_staged, result.ticks_inserted) == (60, 40)
    with psycopg.connect(sink_settings.database) as c:
        row = c.execute(
            "SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM market_data_ticks"
        ).fetchone()
    assert row == (len(ticks), len(ticks))
