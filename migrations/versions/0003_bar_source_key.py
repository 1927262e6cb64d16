"""A bar's source in its key, its VWAP column, and rollups per source.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Bars derived from trades (source ``derived.trades``) share exchange, symbol, interval and
timestamp with a venue's own bars: with the source in the primary key both are stored instead
of one overwriting the other. The timestamp stays in the key, as a hypertable's unique indexes
must hold its time column; on a compressed hypertable every key column must also be a segmentby
or orderby column, so the source joins the orderby. ``vwap`` is nullable: venues' bars carry
none. Stored bars of sources now merged into their venue's one bar source are renamed
(:data:`RENAMED`). The rollups (migration 0002) are rebuilt per source (``marketdata/rollups.py``
says why): the plain-PostgreSQL ones are recomputed whole by the next ``mdp rollup`` (their marks
start afresh), the continuous aggregates by their policies.

Downgrade: where one bar is stored under several sources, the venue's (else the latest written)
is kept and the others are deleted, as the old key holds one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from psycopg import sql

from marketdata.rollups import (
    GROUPS,
    GROUPS_0002,
    MARKS,
    SOURCE,
    continuous_aggregate,
    plain_table,
)
from marketdata.rollups import rollups as parse_rollups
from marketdata.settings import Settings

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BARS = "market_data_ohlcv"
PKEY = f"{BARS}_pkey"
KEY = ("exchange", "symbol", "interval", "timestamp", "source")
KEY_0002 = ("exchange", "symbol", "interval", "timestamp")
ORDER = '"timestamp" DESC, "interval", source'
ORDER_0002 = '"timestamp" DESC, "interval"'
DERIVED = "derived.%"
# One source per venue's bar series, whether live, backfilled, imported or gap-filled (the
# normalisers gave REST klines and IB's historical bars sources of their own until now).
RENAMED = {
    "binance.rest.klines": "binance.kline",
    "ibkr.realtime": "ibkr.bars",
    "ibkr.historical": "ibkr.bars",
}


def _execute(statement: sql.Composed) -> None:
    op.execute(statement.as_string(None))


def _timescaledb_enabled() -> bool:
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    )
    return found.first() is not None


def _compressed() -> bool:
    """Whether compression is enabled on the bars hypertable (MDP_COMPRESS_AFTER)."""
    found = op.get_bind().execute(
        sa.text(
            "SELECT 1 FROM timescaledb_information.hypertables"
            " WHERE hypertable_name = :table AND compression_enabled"
        ),
        {"table": BARS},
    )
    return found.first() is not None


def _drop_rollups(timescaledb: bool) -> None:
    bind = op.get_bind()
    pattern = {"pattern": f"^{SOURCE}_[0-9]+[mhd]$"}
    if timescaledb:
        views = bind.execute(
            sa.text(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
                " WHERE view_schema = current_schema() AND view_name ~ :pattern"
            ),
            pattern,
        ).scalars()
        for view in list(views):
            _execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(view)))
        return
    tables = bind.execute(
        sa.text(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename ~ :pattern"
        ),
        pattern,
    ).scalars()
    for table in list(tables):
        _execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    _execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(MARKS)))


def _make_rollups(timescaledb: bool, groups: tuple[str, ...]) -> None:
    settings: Settings = context.config.attributes["settings"]
    for rollup in parse_rollups(settings.rollup_intervals):
        if timescaledb:
            for statement in continuous_aggregate(rollup, groups):
                _execute(statement)
        else:
            _execute(plain_table(rollup, groups))


def _key(columns: tuple[str, ...], order: str, timescaledb: bool) -> None:
    table = sql.Identifier(BARS)
    _execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(PKEY)))
    if timescaledb and _compressed():
        _execute(
            sql.SQL("ALTER TABLE {} SET (timescaledb.compress_orderby = {})").format(
                table, sql.Literal(order)
            )
        )
    _execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            table, sql.Identifier(PKEY), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
    )


def upgrade() -> None:
    timescaledb = _timescaledb_enabled()
    _drop_rollups(timescaledb)
    # Before the key holds the source, while each bar is still one row.
    for old, new in RENAMED.items():
        _execute(
            sql.SQL("UPDATE {} SET source = {} WHERE source = {}").format(
                sql.Identifier(BARS), sql.Literal(new), sql.Literal(old)
            )
        )
    _key(KEY, ORDER, timescaledb)
    op.add_column(BARS, sa.Column("vwap", sa.Numeric, nullable=True))
    _make_rollups(timescaledb, GROUPS)


def downgrade() -> None:
    timescaledb = _timescaledb_enabled()
    _drop_rollups(timescaledb)
    # One row per old key: a venue's bar before a derived one, else the latest written.
    _execute(
        sql.SQL(
            "DELETE FROM {table} AS a USING {table} AS b WHERE {same} AND a.source <> b.source"
            " AND ((a.source LIKE {derived}) > (b.source LIKE {derived})"
            " OR ((a.source LIKE {derived}) = (b.source LIKE {derived})"
            " AND (a.updated_at, a.source) < (b.updated_at, b.source)))"
        ).format(
            table=sql.Identifier(BARS),
            same=sql.SQL(" AND ").join(
                sql.SQL("a.{0} = b.{0}").format(sql.Identifier(name)) for name in KEY_0002
            ),
            derived=sql.Literal(DERIVED),
        )
    )
    op.drop_column(BARS, "vwap")
    _key(KEY_0002, ORDER_0002, timescaledb)
    _make_rollups(timescaledb, GROUPS_0002)
