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

The list may change at any time: ``mdp migrate`` then makes what is newly listed and freezes
what no longer is (:func:`reconcile`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from marketdata.errors import MarketDataError, TransientError
from marketdata.rollup_list import ALLOWED, LOOKBACK, SOURCE, Rollup, parse, rollups

__all__ = ["ALLOWED", "LOOKBACK", "SOURCE", "Rollup", "parse", "rollups"]

log = logging.getLogger(__name__)

SOURCE_INTERVAL: Final = "1m"
MARKS: Final = "market_data_rollup_marks"
# time_bucket's default origin for timestamptz (a Monday, midnight UTC): date_bin needs it named.
ORIGIN: Final = "2000-01-03 00:00:00+00"
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


# The relations a rollup of any list is named as (what migration 0002's downgrade drops too).
NAMED_LIKE: Final = f"^{SOURCE}_[0-9]+[mhd]$"


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :func:`reconcile` did, by rollup name (the relation is ``market_data_ohlcv_<name>``)."""

    created: tuple[str, ...] = ()  # listed, missing: made and filled from the stored 1m bars
    resumed: tuple[str, ...] = ()  # listed again after being left out: brought up to date
    kept: tuple[str, ...] = ()  # no longer listed: kept as they are, no longer refreshed


def _name(relation: str) -> str:
    return relation.removeprefix(f"{SOURCE}_")


def plain_rollups(conn: psycopg.Connection[Any]) -> bool | None:
    """True when the rollups are plain tables (migration 0002 ran without TimescaleDB, even if
    the extension came later), False when continuous aggregates, None before the migration."""
    marks = conn.execute(sql.SQL("SELECT to_regclass({})").format(sql.Literal(MARKS))).fetchone()
    if marks is not None and marks[0] is not None:
        return True
    return False if timescaledb_enabled(conn) else None


def reconcile(conn: psycopg.Connection[Any], spec: str) -> Reconciled:
    """Make the rollups in the database those ``spec`` lists (``mdp migrate`` after the
    migrations; ``conn`` in autocommit, as a continuous aggregate's refresh runs outside any
    transaction).

    A rollup listed but missing is made and filled at once from the stored 1m bars. A rollup
    no longer listed is kept, data and all, and no longer refreshed: the bars' retention may have
    dropped the bars it was made of, so dropping it could lose what nothing can rebuild (drop it
    by hand: ``DROP TABLE`` / ``DROP MATERIALIZED VIEW``). On TimescaleDB that means its refresh
    policy removed and ``materialized_only`` set, so that it neither changes nor computes new
    buckets at query time, as a plain table left alone does. Listed again, it is brought up to
    date over its whole range."""
    wanted = {rollup.table: rollup for rollup in rollups(spec)}
    plain = plain_rollups(conn)
    if plain is None:
        raise MarketDataError("the rollups are not there: `mdp migrate` makes them")
    if plain:
        return _reconcile_plain(conn, wanted)
    return _reconcile_continuous(conn, wanted)


def _reconcile_plain(conn: psycopg.Connection[Any], wanted: dict[str, Rollup]) -> Reconciled:
    found = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ %s",
        (NAMED_LIKE,),
    ).fetchall()
    have = {str(row[0]) for row in found}
    missing = [rollup for table, rollup in wanted.items() if table not in have]
    with conn.transaction():
        for rollup in missing:
            conn.execute(plain_table(rollup))
            # A mark left by an earlier table of this name would skip the bars before it.
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE rollup = %s").format(sql.Identifier(MARKS)),
                (rollup.name,),
            )
    if missing:
        # Without a mark a run reads every stored 1m bar: the new tables are filled whole.
        refresh(conn, ",".join(rollup.name for rollup in missing))
    # A table left out for a while needs nothing special: its mark is that old, so the next run
    # recomputes every bucket whose bars were written since.
    return Reconciled(
        created=tuple(rollup.name for rollup in missing),
        kept=tuple(sorted(_name(table) for table in have - set(wanted))),
    )


def _reconcile_continuous(conn: psycopg.Connection[Any], wanted: dict[str, Rollup]) -> Reconciled:
    have = dict(
        conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
            " WHERE view_schema = current_schema() AND view_name ~ %s",
            (NAMED_LIKE,),
        ).fetchall()
    )
    created, resumed, kept = [], [], []
    for table, rollup in wanted.items():
        view = sql.Identifier(table)
        if table not in have:
            for statement in continuous_aggregate(rollup):
                conn.execute(statement)
            created.append(rollup.name)
        elif have[table]:  # frozen when it was left out of the list
            conn.execute(
                sql.SQL("ALTER MATERIALIZED VIEW {} SET (timescaledb.materialized_only = false)")
                .format(view)
            )  # fmt: skip
            conn.execute(continuous_aggregate(rollup)[1])  # its refresh policy again
            resumed.append(rollup.name)
        else:
            continue
        # The whole range: bars older than the policy's window are in no bucket otherwise.
        conn.execute(
            sql.SQL("CALL refresh_continuous_aggregate({}, NULL, NULL)").format(sql.Literal(table))
        )
    for table in sorted(set(have) - set(wanted)):
        if not have[table]:
            conn.execute(
                sql.SQL("SELECT remove_continuous_aggregate_policy({}, if_exists => true)").format(
                    sql.Literal(table)
                )
            )
            conn.execute(
                sql.SQL("ALTER MATERIALIZED VIEW {} SET (timescaledb.materialized_only = true)")
                .format(sql.Identifier(table))
            )  # fmt: skip
        kept.append(_name(table))
    return Reconciled(tuple(created), tuple(resumed), tuple(kept))


def reconcile_database(url: str, spec: str) -> Reconciled:
    """:func:`reconcile` on a connection of its own; failures as one line (MarketDataError)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            done = reconcile(conn, spec)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to PostgreSQL: {_first(exc)}") from None
    except psycopg.Error as exc:
        raise MarketDataError(f"rollups not reconciled: {_first(exc)}") from None
    for name in done.created:
        log.info("rollup %s made (MDP_ROLLUP_INTERVALS) and filled from the stored 1m bars", name)
    for name in done.resumed:
        log.info("rollup %s listed again: refreshed over its whole range, refreshed from now on",
                 name)  # fmt: skip
    for name in done.kept:
        log.warning(
            "rollup %s is not in MDP_ROLLUP_INTERVALS: kept as it is and no longer refreshed"
            " (drop it by hand to remove it)", name,
        )  # fmt: skip
    return done


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
