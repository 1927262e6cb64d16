"""One transaction per batch: binary COPY into a staging table, then INSERT … ON CONFLICT.

Ticks: a key already stored is skipped (``DO NOTHING``). Bars: a later version replaces the
stored one, except that a replayed live version never overwrites a closed bar, and a version
equal to the stored one writes nothing. The batch is deduplicated by key before the insert,
since ``ON CONFLICT`` cannot touch one row twice in a statement.

Fast path: a batch that holds no stored key (ticks nearly always; bars of an import or a
backfill) is first copied straight into the table inside a savepoint, at about twice the speed
of the staged path for the database and without the temporary table; a unique violation rolls
that back and the batch takes the staged path, so either way the rules above hold. Live klines
update stored bars all the time and replays come in runs, so after a batch failed the fast path
the next few of its kind go straight to the staged one instead of paying for a copy that is
rolled back.

Rows are the records' own field tuples (``msgspec.structs.astuple``, in column order, checked in
the tests), formatted by psycopg's binary COPY formatter in a plain loop, with one ``await`` per
32 KiB rather than per row; jsonb extras are dumped by msgspec rather than ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.types.json import Jsonb, JsonbBinaryDumper

from marketdata.dedupe import latest_bars, unique_ticks
from marketdata.records import Bar, Tick

TICK_COLUMNS: Final = (
    ("exchange", "text"), ("symbol", "text"), ("timestamp", "timestamptz"), ("source", "text"),
    ("trade_id", "text"), ("price", "numeric"), ("size", "numeric"), ("side", "text"),
    ("received_at", "timestamptz"), ("extras", "jsonb"),
)  # fmt: skip
TICK_KEY: Final = ("exchange", "symbol", "timestamp", "source", "trade_id")
BAR_COLUMNS: Final = (
    ("exchange", "text"), ("symbol", "text"), ("interval", "text"), ("timestamp", "timestamptz"),
    ("open", "numeric"), ("high", "numeric"), ("low", "numeric"), ("close", "numeric"),
    ("volume", "numeric"), ("trade_count", "int8"), ("closed", "bool"), ("source", "text"),
    ("vwap", "numeric"),
)  # fmt: skip
# The source is in the key: a derived bar and a venue's own bar of one minute are both stored.
BAR_KEY: Final = ("exchange", "symbol", "interval", "timestamp", "source")

AnyConnection = psycopg.AsyncConnection[Any]
# Batches (of ticks, of bars) sent straight to the staged path after one failed the fast path:
# a failed attempt costs a copy that is rolled back, a skipped chance only the slower path.
# Replays come in runs (a rebalance, an import run twice), live kline updates all the time.
FAST_PATH_PAUSE: Final = 8


@dataclass(frozen=True, slots=True)
class Tables:
    ticks: str = "market_data_ticks"
    bars: str = "market_data_ohlcv"


@dataclass(frozen=True, slots=True)
class WriteResult:
    ticks_staged: int
    ticks_inserted: int
    bars_staged: int
    bars_written: int


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


_encode_json: Final = msgspec.json.encode


class _JsonbDumper(JsonbBinaryDumper):
    """jsonb in binary COPY, by msgspec: what ``set_json_dumps`` does, without its layers of
    calls per value (extras are one value a tick)."""

    def dump(self, obj: Any) -> Buffer | None:
        if isinstance(obj, Jsonb):
            return super().dump(obj)
        return b"\x01" + _encode_json(obj)


# A record's fields are its table's columns in the same order (tests/unit/sinks/test_writer.py),
# so its field tuple is its row.
_tick_row: Final = msgspec.structs.astuple
_bar_row: Final = msgspec.structs.astuple


class BatchWriter:
    def __init__(self, tables: Tables | None = None) -> None:
        self.tables = tables or Tables()
        tick_cols = [name for name, _ in TICK_COLUMNS]
        bar_cols = [name for name, _ in BAR_COLUMNS]
        self._tick_types = [kind for _, kind in TICK_COLUMNS]
        self._bar_types = [kind for _, kind in BAR_COLUMNS]
        stage_ticks, stage_bars = (
            sql.Identifier("mdp_stage_ticks"),
            sql.Identifier("mdp_stage_bars"),
        )
        ticks, bars = sql.Identifier(self.tables.ticks), sql.Identifier(self.tables.bars)
        # Temporary tables live as long as the connection; ON COMMIT DELETE ROWS empties them.
        self._create_stages = [
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            ).format(stage, table)
            for stage, table in ((stage_ticks, ticks), (stage_bars, bars))
        ]
        self._copy_ticks = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            stage_ticks, _names(tick_cols)
        )
        self._copy_ticks_direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            ticks, _names(tick_cols)
        )
        self._copy_bars = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            stage_bars, _names(bar_cols)
        )
        self._copy_bars_direct = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            bars, _names(bar_cols)
        )
        self._tick_pause = self._bar_pause = 0
        self._insert_ticks = sql.SQL(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) DO NOTHING"
        ).format(table=ticks, cols=_names(tick_cols), stage=stage_ticks, key=_names(TICK_KEY))
        values = [name for name in bar_cols if name not in BAR_KEY]
        self._upsert_bars = sql.SQL(
            "INSERT INTO {table} AS stored ({cols}) SELECT {cols} FROM {stage}"
            " ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now()"
            " WHERE (NOT stored.closed OR EXCLUDED.closed)"
            " AND ({old}) IS DISTINCT FROM ({new})"
        ).format(
            table=bars, cols=_names(bar_cols), stage=stage_bars, key=_names(BAR_KEY),
            sets=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in values
            ),
            old=sql.SQL(", ").join(sql.Identifier("stored", name) for name in values),
            new=sql.SQL(", ").join(sql.Identifier("excluded", name) for name in values),
        )  # fmt: skip

    async def prepare(self, conn: AnyConnection) -> None:
        """Create this connection's staging tables and set its jsonb dumper (once per
        connection)."""
        use_msgspec_jsonb(conn)
        async with conn.transaction():
            for statement in self._create_stages:
                await conn.execute(statement)

    async def write(
        self, conn: AnyConnection, ticks: Sequence[Tick], bars: Sequence[Bar]
    ) -> WriteResult:
        """Store one batch in one transaction; nothing is stored when it raises."""
        bars = latest_bars(bars)
        staged = inserted = written = 0
        async with conn.transaction(), conn.cursor() as cur:
            if ticks:
                # A repeated key within the batch also fails the fast path, and is deduplicated
                # on the staged one; a clean batch skips that work.
                if self._tick_pause:
                    self._tick_pause -= 1
                    direct = False
                else:
                    rows = map(_tick_row, ticks)
                    direct = await self._copy_direct(
                        conn, cur, self._copy_ticks_direct, self._tick_types, rows
                    )
                    self._tick_pause = 0 if direct else FAST_PATH_PAUSE
                if direct:
                    staged = inserted = len(ticks)
                else:
                    rows = map(_tick_row, unique_ticks(ticks))
                    await self._copy(cur, self._copy_ticks, self._tick_types, rows)
                    await cur.execute(self._insert_ticks)
                    staged, inserted = len(ticks), cur.rowcount
            if bars:
                if self._bar_pause:
                    self._bar_pause -= 1
                elif await self._copy_direct(conn, cur, self._copy_bars_direct, self._bar_types,
                                             map(_bar_row, bars)):  # fmt: skip
                    return WriteResult(staged, inserted, len(bars), len(bars))
                else:
                    self._bar_pause = FAST_PATH_PAUSE
                await self._copy(cur, self._copy_bars, self._bar_types, map(_bar_row, bars))
                await cur.execute(self._upsert_bars)
                written = cur.rowcount
        return WriteResult(staged, inserted, len(bars), written)

    async def _copy_direct(
        self, conn: AnyConnection, cur: psycopg.AsyncCursor[Any], statement: sql.Composed,
        types: list[str], rows: Iterable[tuple[object, ...]],
    ) -> bool:  # fmt: skip
        """Copy ``rows`` straight into their table inside a savepoint; False (and nothing
        written) when one of their keys is already stored or repeated."""
        try:
            async with conn.transaction():
                await self._copy(cur, statement, types, rows)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    @staticmethod
    async def _copy(
        cur: psycopg.AsyncCursor[Any], statement: sql.Composed, types: list[str],
        rows: Iterable[tuple[object, ...]],
    ) -> None:  # fmt: skip
        await copy_rows(cur, statement, types, rows)


def use_msgspec_jsonb(conn: AnyConnection) -> None:
    """Dump jsonb values of binary COPY on ``conn`` with msgspec."""
    conn.adapters.register_dumper(Jsonb, _JsonbDumper)


async def copy_rows(
    cur: psycopg.AsyncCursor[Any], statement: sql.SQL | sql.Composed, types: list[str],
    rows: Iterable[tuple[object, ...]],
) -> None:  # fmt: skip
    """``COPY … FROM STDIN (FORMAT BINARY)`` of ``rows``, typed by ``types``."""
    async with cur.copy(statement) as copy:
        copy.set_types(types)
        # The formatter fills a buffer and hands it over every 32 KiB: one await per buffer,
        # not one per row (what ``await copy.write_row(row)`` costs).
        write_row = copy.formatter.write_row
        for row in rows:
            if data := write_row(row):
                await copy.write(data)
