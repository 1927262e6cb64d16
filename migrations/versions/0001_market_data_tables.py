"""Market-data tables: ticks and OHLCV bars, hypertables when TimescaleDB is available.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Chunk intervals (TimescaleDB advises that the chunks being written, indexes included, fit in
about a quarter of memory): a busy venue prints millions of trades a day, so ticks get one-day
chunks; bars are a few thousand rows per instrument a day, so a week. Both are settings.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

from marketdata.database import PLAIN_POSTGRES_WARNING
from marketdata.settings import Settings

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("marketdata.migrations")

TICKS = "market_data_ticks"
BARS = "market_data_ohlcv"


def _timescaledb_available() -> bool:
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    )
    return found.first() is not None


def upgrade() -> None:
    op.create_table(
        TICKS,
        sa.Column("exchange", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timestamp", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("trade_id", sa.Text, nullable=False),
        sa.Column("price", sa.Numeric, nullable=False),
        sa.Column("size", sa.Numeric, nullable=False),
        sa.Column("side", sa.Text, nullable=True),
        sa.Column("received_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("extras", sa.dialects.postgresql.JSONB, nullable=True),
        sa.PrimaryKeyConstraint(
            "exchange", "symbol", "timestamp", "source", "trade_id", name=f"{TICKS}_pkey"
        ),
        sa.CheckConstraint("side IN ('buy', 'sell', 'bid', 'ask')", name=f"{TICKS}_side"),
        sa.CheckConstraint("size >= 0", name=f"{TICKS}_size"),
    )
    op.create_table(
        BARS,
        sa.Column("exchange", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("timestamp", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("open", sa.Numeric, nullable=False),
        sa.Column("high", sa.Numeric, nullable=False),
        sa.Column("low", sa.Numeric, nullable=False),
        sa.Column("close", sa.Numeric, nullable=False),
        sa.Column("volume", sa.Numeric, nullable=False),
        sa.Column("trade_count", sa.BigInteger, nullable=True),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column(
            "updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("exchange", "symbol", "interval", "timestamp", name=f"{BARS}_pkey"),
        sa.CheckConstraint("high >= low", name=f"{BARS}_range"),
        sa.CheckConstraint("volume >= 0", name=f"{BARS}_volume"),
    )
    if not _timescaledb_available():
        log.warning(PLAIN_POSTGRES_WARNING)
        return
    settings: Settings = context.config.attributes["settings"]
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    plan = (
        (TICKS, settings.ticks_chunk_interval, settings.ticks_retention, "source, trade_id"),
        (BARS, settings.bars_chunk_interval, settings.bars_retention, "interval"),
    )
    for table, chunk, retention, order_tail in plan:
        _hypertable(table, chunk, settings.compress_after, retention, order_tail)


def _hypertable(
    table: str, chunk: str, compress_after: str | None, retention: str | None, order_tail: str
) -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "SELECT create_hypertable(CAST(:table AS regclass), 'timestamp',"
            " chunk_time_interval => CAST(:chunk AS interval), if_not_exists => TRUE)"
        ),
        {"table": table, "chunk": chunk},
    )
    if compress_after:
        # Segment by instrument so that a compressed chunk still answers one symbol's range fast.
        quoted = bind.dialect.identifier_preparer.quote(table)
        op.execute(
            f"ALTER TABLE {quoted} SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'exchange, symbol',"
            f" timescaledb.compress_orderby = 'timestamp DESC, {order_tail}')"
        )
        bind.execute(
            sa.text(
                "SELECT add_compression_policy(CAST(:table AS regclass), CAST(:after AS interval))"
            ),
            {"table": table, "after": compress_after},
        )
    if retention:
        bind.execute(
            sa.text(
                "SELECT add_retention_policy(CAST(:table AS regclass), CAST(:keep AS interval))"
            ),
            {"table": table, "keep": retention},
        )


def downgrade() -> None:
    op.drop_table(BARS)
    op.drop_table(TICKS)
