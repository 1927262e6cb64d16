"""`mdp services` as a user runs it, against the services this session uses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from marketdata import migrate
from marketdata.settings import Settings
from mdp.services.kafka_native import (
    NativeKafka,
    cluster_id,
    log4j_properties,
    server_properties,
)
from tests.services import Found

TOPIC_NAMES = ("md.ticks.raw", "md.bars.raw", "md.ticks", "md.bars", "md.dlq")


def _mdp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdp", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "MDP_SERVICES_BACKEND": "native", **(env or {})},
    )  # fmt: skip


def test_status_shows_both_native_services_up(services: Found) -> None:
    if services.how != "native":
        pytest.skip(f"services came from {services.how}, not `mdp services`")
    result = _mdp("services", "status")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert lines["kafka"][1] == "up"
    assert lines["postgres"][1] == "up"
    assert lines["kafka"][2] == services.kafka_bootstrap


def test_up_twice_is_harmless_and_prints_connection_strings(services: Found) -> None:
    if services.how != "native":
        pytest.skip(f"services came from {services.how}, not `mdp services`")
    result = _mdp("services", "up")
    assert result.returncode == 0, result.stderr
    assert f"KAFKA_BOOTSTRAP_SERVERS={services.kafka_bootstrap}" in result.stdout
    assert f"MARKET_DATA_DATABASE_URL={services.database_url}" in result.stdout


def test_topics_command_creates_then_reports_existing(services: Found, unique: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap, "MDP_TOPIC_PREFIX": f"{unique}."}
    first = _mdp("topics", env=env)
    assert first.returncode == 0, first.stderr
    states = dict(line.split() for line in first.stdout.splitlines())
    assert states == {f"{unique}.{name}": "created" for name in TOPIC_NAMES}
    again = _mdp("topics", env=env)
    assert dict(line.split() for line in again.stdout.splitlines()) == {
        f"{unique}.{name}": "exists" for name in TOPIC_NAMES
    }


def test_the_storage_tool_formats_with_an_id_that_begins_with_a_dash(tmp_path: Path) -> None:
    # The generator no longer makes such ids, but the command must not depend on that alone.
    kafka = NativeKafka(Settings.from_env({"MDP_STATE_DIR": str(tmp_path / "state")}))
    kafka.ensure_jars()
    data = tmp_path / "data"
    config, log4j = tmp_path / "server.properties", tmp_path / "log4j2.properties"
    config.write_text(server_properties(data, 29092, 29093))
    log4j.write_text(log4j_properties(tmp_path / "server.log"))
    dashed = "-" + cluster_id()[1:]
    result = subprocess.run(
        kafka.format_command(dashed, config, log4j), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cluster.id={dashed}" in (data / "meta.properties").read_text().splitlines()


@pytest.fixture
def empty_database(services: Found, unique: str) -> Iterator[str]:
    """A database of this test's own, created fresh: no tables in it."""
    with psycopg.connect(services.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique)))
    try:
        yield urlunsplit(urlsplit(services.database_url)._replace(path=f"/{unique}"))
    finally:
        with psycopg.connect(services.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(unique)))


def test_status_on_a_database_without_tables_says_to_migrate(empty_database: str) -> None:
    result = _mdp("status", env={"MARKET_DATA_DATABASE_URL": empty_database})
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mdp: error: the market-data tables are missing")
    assert lines[0].endswith("run `mdp migrate`")


def test_status_shows_a_venue_bar_series_and_the_derived_one_apart(empty_database: str) -> None:
    settings = Settings.from_env({"MARKET_DATA_DATABASE_URL": empty_database})
    migrate.upgrade(settings)
    with psycopg.connect(empty_database) as conn:
        for source, minutes in (("binance.kline", 2), ("derived.trades", 3)):
            for minute in range(minutes):
                conn.execute(
                    "INSERT INTO market_data_ohlcv (exchange, symbol, interval, timestamp, open,"
                    " high, low, close, volume, closed, source) VALUES ('BINANCE', 'BTCUSDT',"
                    " '1m', %s::timestamptz + %s * interval '1 minute', 1, 1, 1, 1, 1, true, %s)",
                    ("2024-03-01 12:00+00", minute, source),
                )
    result = _mdp("status", env={"MARKET_DATA_DATABASE_URL": empty_database})
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["kind", "exchange", "symbol", "interval", "source", "rows", "newest",
                        "(UTC)"]  # fmt: skip
    assert [line[:6] for line in lines[1:3]] == [
        ["bars", "BINANCE", "BTCUSDT", "1m", "binance.kline", "2"],
        ["bars", "BINANCE", "BTCUSDT", "1m", "derived.trades", "3"],
    ]
    assert result.stdout.splitlines()[-1] == "total: 0 ticks, 5 bars in 2 series"
