"""`mdp services` as a user runs it, against the services this session uses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.services import Found


def _mdp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketdata", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "MDP_SERVICES_BACKEND": "native"},
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
