"""Rollups of 1m bars (MDP_ROLLUP_INTERVALS): continuous aggregates on TimescaleDB, tables kept
by `mdp rollup` on plain PostgreSQL (marketdata/rollups.py says how each stays current).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

The rollups made are those the settings name when this revision runs; when the list changes
later, `mdp migrate` reconciles the rollups with it (marketdata/rollups.py, `reconcile`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from psycopg import sql

from marketdata.rollups import (
    GROUPS_0002,
    MARKS,
    SOURCE,
    continuous_aggregate,
    marks_table,
    plain_table,
)
from marketdata.rollups import rollups as parse_rollups
from marketdata.settings import Settings

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The plain-PostgreSQL job finds the buckets to recompute by when their bars were written.
UPDATED_INDEX = f"{SOURCE}_updated_at"


def _timescaledb_enabled() -> bool:
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    )
    return found.first() is not None


def _execute(statement: sql.Composed) -> None:
    op.execute(statement.as_string(None))


def upgrade() -> None:
    settings: Settings = context.config.attributes["settings"]
    rollups = parse_rollups(settings.rollup_intervals)
    if _timescaledb_enabled():
        for rollup in rollups:
            for statement in continuous_aggregate(rollup, GROUPS_0002):
                _execute(statement)
        return
    for rollup in rollups:
        _execute(plain_table(rollup, GROUPS_0002))
    _execute(marks_table())
    op.create_index(UPDATED_INDEX, SOURCE, ["updated_at"])


def downgrade() -> None:
    # Whatever list made them: every relation named like a rollup goes.
    bind = op.get_bind()
    pattern = {"pattern": f"^{SOURCE}_[0-9]+[mhd]$"}
    if _timescaledb_enabled():
        views = bind.execute(
            sa.text(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates"
                " WHERE view_schema = current_schema() AND view_name ~ :pattern"
            ),
            pattern,
        ).scalars()
        for view in list(views):
            _execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(view)))
    tables = bind.execute(
        sa.text(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename ~ :pattern"
        ),
        pattern,
    ).scalars()
    for table in list(tables):
        _execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    _execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(MARKS)))
    _execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(UPDATED_INDEX)))
