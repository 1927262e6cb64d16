"""Alembic migrations on a real PostgreSQL server, each test in a database of its own."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from marketdata import migrate
from marketdata.database import PLAIN_POSTGRES_WARNING
from marketdata.settings import Settings
from tests.services import Found

ROOT = Path(__file__).resolve().parents[2]
HEAD = "0003"


@pytest.fixture
def fresh(services: Found, unique: str) -> Iterator[Settings]:
    """Settings pointing at a new, empty database, dropped afterwards."""
    base, _, _ = services.database_url.rpartition("/")
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique)))
    yield Settings.from_env({"MARKET_DATA_DATABASE_URL": f"{base}/{unique}"})
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(unique)))


def _tables(settings: Settings) -> dict[str, list[str]]:
    with psycopg.connect(settings.database) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name LIKE 'market_data_%'"
            " ORDER BY table_name, ordinal_position"
        ).fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def _primary_key(settings: Settings, table: str) -> list[str]:
    with psycopg.connect(settings.database) as conn:
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


def _has_timescaledb(settings: Settings) -> bool:
    with psycopg.connect(settings.database) as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        )


def test_upgrade_creates_both_tables_with_their_keys(
    fresh: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="marketdata.migrations"):
        migrate.upgrade(fresh)
    assert migrate.current_revision(fresh) == HEAD
    rollup_columns = ["exchange", "symbol", "source", "timestamp", "open", "high", "low", "close",
                      "volume", "trade_count", "bars"]  # fmt: skip
    # Rollups of 1m bars (0002, per source since 0003): continuous aggregates (views) on
    # TimescaleDB, tables and the job's marks on plain PostgreSQL; the same columns either way.
    marks = (
        {} if _has_timescaledb(fresh) else {"market_data_rollup_marks": ["rollup", "scanned_to"]}
    )
    assert _tables(fresh) == {
        "market_data_ticks": ["exchange", "symbol", "timestamp", "source", "trade_id", "price",
                              "size", "side", "received_at", "extras"],
        "market_data_ohlcv": ["exchange", "symbol", "interval", "timestamp", "open", "high", "low",
                              "close", "volume", "trade_count", "closed", "source", "updated_at",
                              "vwap"],
        **{f"market_data_ohlcv_{name}": rollup_columns for name in ("5m", "15m", "1h", "1d")},
        **marks,
    }  # fmt: skip
    assert _primary_key(fresh, "market_data_ticks") == [
        "exchange", "symbol", "timestamp", "source", "trade_id"
    ]  # fmt: skip
    assert _primary_key(fresh, "market_data_ohlcv") == [
        "exchange", "symbol", "interval", "timestamp", "source"
    ]  # fmt: skip
    if _has_timescaledb(fresh):
        with psycopg.connect(fresh.database) as conn:
            hypertables = conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1"
            ).fetchall()
        assert hypertables == [("market_data_ohlcv",), ("market_data_ticks",)]
    else:
        assert PLAIN_POSTGRES_WARNING in caplog.text


def test_upgrade_is_idempotent_and_downgrade_drops_everything(fresh: Settings) -> None:
    migrate.upgrade(fresh)
    migrate.upgrade(fresh)
    assert migrate.current_revision(fresh) == HEAD
    migrate.downgrade(fresh, "base")
    assert migrate.current_revision(fresh) is None
    assert _tables(fresh) == {}
    migrate.upgrade(fresh, "0001")
    assert set(_tables(fresh)) == {"market_data_ticks", "market_data_ohlcv"}
    migrate.upgrade(fresh)
    assert {"market_data_ohlcv_5m", "market_data_ohlcv_1d"} <= set(_tables(fresh))


_BAR = (
    "INSERT INTO market_data_ohlcv (exchange, symbol, interval, timestamp, open, high, low,"
    " close, volume, trade_count, closed, source) VALUES"
    " ('BINANCE', %s, '1m', '2024-03-01 12:00+00', 1, 2, 1, 2, %s, 3, true, %s)"
)


def test_0003_keys_bars_by_source_renames_merged_sources_and_goes_back_to_one_bar_a_key(
    fresh: Settings,
) -> None:
    migrate.upgrade(fresh, "0002")
    with psycopg.connect(fresh.database) as conn:
        conn.execute(_BAR, ("BTCUSDT", 5, "binance.rest.klines"))
        conn.execute(_BAR, ("ETHUSDT", 6, "ibkr.historical"))
    migrate.upgrade(fresh)
    with psycopg.connect(fresh.database) as conn:
        # The REST kline joins the live stream's series; the key now tells sources apart.
        assert conn.execute(
            "SELECT symbol, source, vwap FROM market_data_ohlcv ORDER BY symbol"
        ).fetchall() == [("BTCUSDT", "binance.kline", None), ("ETHUSDT", "ibkr.bars", None)]
        conn.execute(_BAR, ("BTCUSDT", 7, "derived.trades"))
        conn.execute(_BAR, ("ETHUSDT", 8, "derived.trades"))
        conn.execute(_BAR, ("SOLUSDT", 9, "derived.trades"))
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(_BAR, ("SOLUSDT", 10, "derived.trades"))
    migrate.downgrade(fresh, "0002")
    assert "vwap" not in _tables(fresh)["market_data_ohlcv"]
    assert _primary_key(fresh, "market_data_ohlcv") == ["exchange", "symbol", "interval",
                                                        "timestamp"]  # fmt: skip
    with psycopg.connect(fresh.database) as conn:
        # One bar a key again: the venue's where there were two.
        assert conn.execute(
            "SELECT symbol, source, volume FROM market_data_ohlcv ORDER BY symbol"
        ).fetchall() == [("BTCUSDT", "binance.kline", 5), ("ETHUSDT", "ibkr.bars", 6),
                         ("SOLUSDT", "derived.trades", 9)]  # fmt: skip
    migrate.upgrade(fresh)
    assert migrate.current_revision(fresh) == HEAD
    assert _primary_key(fresh, "market_data_ohlcv")[-1] == "source"


def test_plain_alembic_command_uses_the_environment(fresh: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "MARKET_DATA_DATABASE_URL": fresh.database},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert migrate.current_revision(fresh) == HEAD


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "cannot connect to PostgreSQL"),
        ("mysql://x@y/z", "MARKET_DATA_DATABASE_URL"),
    ],
)
def test_a_bad_database_url_is_one_clear_line(url: str, words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mdp", "migrate"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MARKET_DATA_DATABASE_URL": url},
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mdp: error: ")
    assert words in lines[0]
