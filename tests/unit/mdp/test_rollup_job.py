"""The rollup job's pieces that need no database: its health, its failure lines, and the daemon
thread a round runs in (the job itself runs against PostgreSQL in tests/integration)."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from mdp.rollup_job import JobMetrics, NotMigrated, _in_daemon_thread, describe


def test_health_follows_the_last_round() -> None:
    metrics = JobMetrics()
    assert not metrics.ready()  # nothing done yet
    metrics.failed()
    assert not metrics.ready()
    metrics.recovered()
    metrics.succeeded({"5m": 3, "1h": 1})
    assert metrics.ready()
    metrics.failed()
    assert not metrics.ready()
    metrics.recovered()
    assert metrics.ready()
    idle = JobMetrics()
    idle.went_idle()
    assert idle.ready()
    assert metrics.registry.get_sample_value("mdp_rollup_rows_written_total", {"rollup": "5m"}) == 3


def test_a_failure_is_one_line_naming_what_failed() -> None:
    away = psycopg.OperationalError(
        'connection failed: connection to server at "db", port 5432 failed: Connection refused'
        "\n\tIs the server running?"
    )
    assert describe(away) == ('cannot reach PostgreSQL: connection failed: connection to server'
                              ' at "db", port 5432 failed: Connection refused')  # fmt: skip
    assert describe(psycopg.OperationalError()) == "cannot reach PostgreSQL: OperationalError"
    assert describe(NotMigrated("the rollup tables are not there")) == (
        "the rollup tables are not there"
    )
    assert describe(psycopg.errors.UndefinedTable("relation x does not exist")).startswith(
        "PostgreSQL refused the round"
    )


async def test_the_daemon_thread_hands_back_results_and_errors() -> None:
    assert await _in_daemon_thread(lambda: 42) == 42

    def broken() -> int:
        raise NotMigrated("no tables")

    with pytest.raises(NotMigrated, match="no tables"):
        await _in_daemon_thread(broken)
    # An abandoned round (stopped meanwhile) finishes later without touching its future.
    release = threading.Event()
    abandoned = _in_daemon_thread(lambda: release.wait(5))
    abandoned.cancel()
    release.set()
    await asyncio.sleep(0.2)
    assert abandoned.cancelled()
