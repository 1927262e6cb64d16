"""Database helpers shared by `mdp services`, the migrations and the sink."""

from __future__ import annotations

import logging

import psycopg

from marketdata.errors import TransientError

log = logging.getLogger(__name__)

PLAIN_POSTGRES_WARNING = (
    "the timescaledb extension is not available on this server: market-data tables will be "
    "plain PostgreSQL tables (no hypertables, compression or retention policies)"
)


async def connect(
    url: str, *, autocommit: bool = False
) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """Open a connection, turning an unreachable server into one clear, retriable error."""
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TransientError(f"cannot connect to PostgreSQL: {first}") from exc


def enable_timescaledb(url: str) -> bool:
    """Enable the extension when the server has it; return whether it is enabled."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if not available:
            return False
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
