"""`mdp services` as a user runs it, against the services this session uses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.services import Found

TOPIC_NAMES = ("md.ticks.raw", "md.bars.raw", "md.ticks", "md.bars", "md.dlq")


def _mdp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketdata", *args],
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
