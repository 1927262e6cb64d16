"""One transaction per batch: binary COPY into a staging table, then INSERT … ON CONFLICT.

Ticks: a key already stored is skipped (``DO NOTHING``). Since a tick batch rarely holds a stored
key (only replays after a crash or a rebalance do), it is first copied straight into the table
inside a savepoint, which runs at about twice the speed of the staged path; a unique violation
rolls that back and the batch takes the staged path. Bars: a later version replaces the
stored one, except that a replayed live version never overwrites a closed bar, and a version
equal to the stored one writes nothing. The batch is deduplicated by key before the insert,
since ``ON CONFLICT`` cannot touch one row twice in a statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

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
)  # fmt: skip
BAR_KEY: Final = ("exchange", "symbol", "interval", "timestamp")

AnyConnection = psycopg.AsyncConnection[Any]


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


def _tick_row(t: Tick) -> tuple[object, ...]:
    return (t.exchange, t.symbol, t.timestamp, t.source, t.trade_id, t.price, t.size, t.side,
            t.received_at, t.extras)  # fmt: skip


def _bar_row(b: Bar) -> tuple[object, ...]:
    return (b.exchange, b.symbol, b.interval, b.timestamp, b.open, b.high, b.low, b.close,
            b.volume, b.trade_count, b.closed, b.source)  # fmt: skip


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
        """Create this connection's staging tables (once per connection)."""
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
                try:
                    async with conn.transaction():
                        rows = map(_tick_row, ticks)
                        await self._copy(cur, self._copy_ticks_direct, self._tick_types, rows)
                    staged = inserted = len(ticks)
                except psycopg.errors.UniqueViolation:
                    unique = unique_ticks(ticks)
                    rows = map(_tick_row, unique)
                    await self._copy(cur, self._copy_ticks, self._tick_types, rows)
                    await cur.execute(self._insert_ticks)
                    staged, inserted = len(ticks), cur.rowcount
            if bars:
                await self._copy(cur, self._copy_bars, self._bar_types, map(_bar_row, bars))
                await cur.execute(self._upsert_bars)
                written = cur.rowcount
        return WriteResult(staged, inserted, len(bars), written)

    @staticmethod
    async def _copy(
        cur: psycopg.AsyncCursor[Any], statement: sql.Composed, types: list[str],
        rows: Iterable[tuple[object, ...]],
    ) -> None:  # fmt: skip
        async with cur.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                await copy.write_row(row)
