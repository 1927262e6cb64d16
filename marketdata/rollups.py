"""Rollups of stored 1-minute bars into longer ones (``MDP_ROLLUP_INTERVALS``: 5m, 15m, 1h, 1d).

Each rollup is a relation ``market_data_ohlcv_<interval>`` with the columns exchange, symbol,
source, timestamp (bucket start, UTC, buckets aligned as ``time_bucket`` aligns them), open, high,
low, close, volume, trade_count (NULL unless every 1m bar of the bucket knows it) and bars (how
many 1m bars the bucket holds). Every rollup is computed from the 1m bars directly, not from a
shorter rollup, so all agree with the bars and with each other.

Rollups are per source, as the bars are (their key holds the source since migration 0003): a
venue's own 1m klines and the bars derived from its trades are two series of one instrument, and
summing both would count its volume twice. Derived bars are not left out, since for instruments
whose venue sends no bars (Sierra Chart, IB ticks, webhook alerts) they are the only series.

- **TimescaleDB**: a continuous aggregate (migration 0002), real-time (``materialized_only =
  false``): buckets past the materialized watermark are computed from the bars at query time. Its
  refresh policy re-materializes ``[now - lookback, now - width)`` every ``min(width, 1 h)``,
  where lookback is ``max(3 days, 3 widths)``; TimescaleDB logs every insert, update and delete of
  a bar in a materialized range, and the next run inside that window recomputes those buckets. A
  late bar or a revision older than the lookback reaches the rollup only through
  ``CALL refresh_continuous_aggregate(...)`` by hand.
- **Plain PostgreSQL**: a table of the same name and columns, kept current by :func:`refresh`
  (``mdp rollup``, run it on a schedule such as every minute): every bucket holding a 1m bar
  whose ``updated_at`` (set on insert and on every revision by the sink) is newer than the last
  run's start minus :data:`SLACK` is recomputed whole from the bars and upserted. Late bars and
  revisions of any age therefore reach the rollup at the next run. Rows are not deleted when the
  bars' retention drops them (nor on TimescaleDB, whose refresh window stops short of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from marketdata.errors import ConfigError

SOURCE: Final = "market_data_ohlcv"
SOURCE_INTERVAL: Final = "1m"
MARKS: Final = "market_data_rollup_marks"
# time_bucket's default origin for timestamptz (a Monday, midnight UTC): date_bin needs it named.
ORIGIN: Final = "2000-01-03 00:00:00+00"
LOOKBACK: Final = timedelta(days=3)
# How far before the previous run's start a run looks again: a sink transaction that began
# before it and committed after carries an older updated_at.
SLACK: Final = timedelta(minutes=5)
COLUMNS: Final = (
    "exchange", "symbol", "source", "timestamp", "open", "high", "low", "close", "volume",
    "trade_count", "bars",
)  # fmt: skip
# What identifies a bucket; before migration 0003 the rollups had no source (0002 makes them so).
GROUPS: Final = ("exchange", "symbol", "source")
GROUPS_0002: Final = ("exchange", "symbol")
_UNITS: Final = {"m": 60, "h": 3600, "d": 86_400}
_SPEC = re.compile(r"([1-9][0-9]{0,5})([mhd])")


@dataclass(frozen=True, slots=True)
class Rollup:
    name: str
    width: timedelta

    @property
    def table(self) -> str:
        return f"{SOURCE}_{self.name}"

    @property
    def lookback(self) -> timedelta:
        return max(LOOKBACK, 3 * self.width)

    @property
    def schedule(self) -> timedelta:
        return min(self.width, timedelta(hours=1))


def rollups(spec: str) -> tuple[Rollup, ...]:
    """The rollups ``5m,15m,1h,1d`` names, shortest first, each once."""
    found: dict[timedelta, Rollup] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        match = _SPEC.fullmatch(part)
        if not match:
            raise ConfigError(f"MDP_ROLLUP_INTERVALS: {part!r} is not N followed by m, h or d")
        width = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        if width <= timedelta(minutes=1):
            raise ConfigError(f"MDP_ROLLUP_INTERVALS: {part!r} is not longer than the 1m bars")
        found.setdefault(width, Rollup(part, width))
    return tuple(found[width] for width in sorted(found))


def _interval(value: timedelta) -> sql.Composed:
    return sql.SQL("CAST({} AS interval)").format(sql.Literal(f"{int(value.total_seconds())} s"))


def _columns() -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, COLUMNS))


def _names(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def continuous_aggregate(rollup: Rollup, groups: tuple[str, ...] = GROUPS) -> list[sql.Composed]:
    """The statements creating ``rollup`` as a real-time continuous aggregate with its policy."""
    bucket = sql.SQL('time_bucket({}, "timestamp")').format(_interval(rollup.width))
    view = sql.Identifier(rollup.table)
    return [
        sql.SQL(
            "CREATE MATERIALIZED VIEW {view}"
            " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
            ' SELECT {groups}, {bucket} AS "timestamp",'
            ' first(open, "timestamp") AS open, max(high) AS high, min(low) AS low,'
            ' last(close, "timestamp") AS close, sum(volume) AS volume,'
            " CASE WHEN count(trade_count) = count(*) THEN sum(trade_count) END AS trade_count,"
            " count(*) AS bars"
            ' FROM {source} WHERE "interval" = {one}'
            " GROUP BY {groups}, {bucket} WITH NO DATA"
        ).format(
            view=view,
            groups=_names(groups),
            bucket=bucket,
            source=sql.Identifier(SOURCE),
            one=sql.Literal(SOURCE_INTERVAL),
        ),
        sql.SQL(
            "SELECT add_continuous_aggregate_policy({view}, start_offset => {start},"
            " end_offset => {end}, schedule_interval => {every})"
        ).format(
            view=sql.Literal(rollup.table),
            start=_interval(rollup.lookback),
            end=_interval(rollup.width),
            every=_interval(rollup.schedule),
        ),
    ]


def plain_table(rollup: Rollup, groups: tuple[str, ...] = GROUPS) -> sql.Composed:
    """The table standing for ``rollup`` on plain PostgreSQL."""
    return sql.SQL(
        "CREATE TABLE {table} ({columns},"
        ' "timestamp" timestamptz NOT NULL, open numeric NOT NULL, high numeric NOT NULL,'
        " low numeric NOT NULL, close numeric NOT NULL, volume numeric NOT NULL,"
        " trade_count bigint, bars bigint NOT NULL,"
        ' PRIMARY KEY ({groups}, "timestamp"))'
    ).format(
        table=sql.Identifier(rollup.table),
        columns=sql.SQL(", ").join(
            sql.SQL("{} text NOT NULL").format(sql.Identifier(name)) for name in groups
        ),
        groups=_names(groups),
    )


def _refresh_statement(rollup: Rollup) -> sql.Composed:
    width = _interval(rollup.width)
    bucket = sql.SQL('date_bin({}, "timestamp", CAST({} AS timestamptz))').format(
        width, sql.Literal(ORIGIN)
    )
    values = [name for name in COLUMNS if name not in {*GROUPS, "timestamp"}]
    return sql.SQL(
        "WITH touched AS ("
        " SELECT DISTINCT exchange, symbol, source, {bucket} AS bucket FROM {source}"
        ' WHERE "interval" = {one} AND updated_at >= CAST(%(since)s AS timestamptz)'
        "), fresh AS ("
        " SELECT b.exchange, b.symbol, b.source, t.bucket AS \"timestamp\","
        ' (array_agg(b.open ORDER BY b."timestamp"))[1] AS open, max(b.high) AS high,'
        ' min(b.low) AS low, (array_agg(b.close ORDER BY b."timestamp" DESC))[1] AS close,'
        " sum(b.volume) AS volume,"
        " CASE WHEN count(b.trade_count) = count(*) THEN sum(b.trade_count) END AS trade_count,"
        " count(*) AS bars"
        " FROM touched t JOIN {source} b ON b.exchange = t.exchange AND b.symbol = t.symbol"
        ' AND b.source = t.source AND b."interval" = {one} AND b."timestamp" >= t.bucket'
        ' AND b."timestamp" < t.bucket + {width}'
        " GROUP BY b.exchange, b.symbol, b.source, t.bucket"
        ") INSERT INTO {table} AS stored ({columns}) SELECT {columns} FROM fresh"
        ' ON CONFLICT (exchange, symbol, source, "timestamp") DO UPDATE SET {sets}'
        " WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        bucket=bucket, source=sql.Identifier(SOURCE), one=sql.Literal(SOURCE_INTERVAL),
        width=width, table=sql.Identifier(rollup.table), columns=_columns(),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in values
        ),
        old=sql.SQL(", ").join(sql.Identifier("stored", name) for name in values),
        new=sql.SQL(", ").join(sql.Identifier("excluded", name) for name in values),
    )  # fmt: skip


def refresh(conn: psycopg.Connection[Any], spec: str) -> dict[str, int]:
    """Bring the plain-PostgreSQL rollups up to date (one transaction each); the rows written
    per rollup."""
    written: dict[str, int] = {}
    for rollup in rollups(spec):
        with conn.transaction():
            mark = conn.execute(
                sql.SQL("SELECT scanned_to FROM {} WHERE rollup = %s FOR UPDATE").format(
                    sql.Identifier(MARKS)
                ),
                (rollup.name,),
            ).fetchone()
            since = mark[0] - SLACK if mark else None
            cur = conn.execute(
                _refresh_statement(rollup),
                {"since": since if since is not None else "-infinity"},
            )
            written[rollup.name] = cur.rowcount
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (rollup, scanned_to) VALUES (%s, now())"
                    " ON CONFLICT (rollup) DO UPDATE SET scanned_to = EXCLUDED.scanned_to"
                ).format(sql.Identifier(MARKS)),
                (rollup.name,),
            )
    return written


def marks_table() -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE {} (rollup text PRIMARY KEY, scanned_to timestamptz NOT NULL)"
    ).format(sql.Identifier(MARKS))


def timescaledb_enabled(conn: psycopg.Connection[Any]) -> bool:
    return (
        conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        is not None
    )
