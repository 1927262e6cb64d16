"""`mdp rollup --every` as `mdp run` and compose run it: a process of its own against a real
PostgreSQL (a database of the test's own) that keeps the rollup tables current, survives the
database going away (a line per retry, no exit), and is gone in time after SIGTERM, also when
SIGTERM arrives in the middle of a run."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bench.support import free_port
from marketdata import migrate
from marketdata.errors import TransientError
from marketdata.records import Bar
from marketdata.rollups import MARKS, rollups
from marketdata.settings import Settings
from mdp.board import parse_metrics
from mdp.rollup_job import run_once
from tests.integration.polling import wait_until
from tests.integration.roles import role_process
from tests.integration.stopping import stop_in_time
from tests.integration.tcp_proxy import TcpProxy
from tests.rollups import expected, plain_database, sample_bars, stored, write
from tests.services import Found

SPEC = "5m,1h"


@pytest.fixture
def plain(services: Found, unique: str) -> Iterator[tuple[str, str]]:
    """(url, spec): a migrated database of this test's own, dropped afterwards."""
    with plain_database(services.database_url, unique, SPEC) as settings:
        yield settings.database, settings.rollup_intervals


def _job(url: str, log: Path, port: int, every: str = "1") -> subprocess.Popen[bytes]:
    env = {"MARKET_DATA_DATABASE_URL": url, "MDP_ROLLUP_INTERVALS": SPEC, "MDP_LOG_LEVEL": "INFO"}
    return role_process(["rollup", "--every", every, "--metrics-port", str(port)], env, log)


def _current(url: str, bars: list[Bar]) -> bool:
    return all(stored(url, r.table) == expected(bars, r.width) for r in rollups(SPEC))


def _figures(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return parse_metrics(answer.read().decode())


def _health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _revised(bar: Bar, **changes: object) -> Bar:
    return Bar(**{**{f: getattr(bar, f) for f in bar.__struct_fields__}, **changes})


async def test_the_job_keeps_the_rollups_current_and_stops_in_time(
    plain: tuple[str, str], log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    url, _ = plain
    port = free_port()
    bars = sample_bars(datetime(2026, 11, 30, 22, 31, tzinfo=UTC), 90)
    await asyncio.to_thread(write, url, bars)
    processes.append(job := _job(url, log, port))
    await wait_until(lambda: _current(url, bars), within=60, step=0.5)
    # A revision of a bar already rolled up, as the sink stores it: the job takes it by itself.
    old = next(b for b in bars if b.interval == "1m")
    revised = _revised(old, close=old.close + 1, high=old.high + 7, volume=Decimal("0.5"))
    await asyncio.to_thread(write, url, [revised])
    everything = [*bars, revised]
    assert not _current(url, everything)
    await wait_until(lambda: _current(url, everything), within=30, step=0.5)
    figures = await asyncio.to_thread(_figures, port)
    assert figures["mdp_rollup_runs_total"] >= 2
    assert figures["mdp_rollup_every_seconds"] == 1
    assert figures["mdp_rollup_failing"] == figures["mdp_rollup_idle"] == 0
    five, hour = (len(expected(bars, r.width)) for r in rollups(SPEC))
    assert figures["mdp_rollup_rows_written_total:5m"] >= five + 1
    assert figures["mdp_rollup_rows_written_total:1h"] >= hour + 1
    assert await asyncio.to_thread(_health, port) == 200
    text = await stop_in_time(job, port, log, "rollup")
    assert text.rstrip().endswith("mdp.rollup_job: rollup: stopped")
    assert "Traceback" not in text


async def test_a_database_away_is_retried_with_a_line_each_time_and_caught_up(
    plain: tuple[str, str], log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    url, _ = plain
    host, _, rest = url.removeprefix("postgresql://mdp@").partition(":")
    server_port, _, database = rest.partition("/")
    proxy = TcpProxy(host, int(server_port))
    await proxy.start()
    try:
        through = f"postgresql://mdp@127.0.0.1:{proxy.port}/{database}"
        bars = sample_bars(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 30)
        await asyncio.to_thread(write, url, bars)
        await proxy.cut()  # away before the first run
        port = free_port()
        processes.append(job := _job(through, log, port))
        failing = "rollup round failed, retrying in"
        await wait_until(lambda: log.read_text().count(failing) >= 3, within=30, step=0.2)
        assert job.poll() is None, "the job exited instead of retrying"
        text = await asyncio.to_thread(log.read_text)
        line = next(x for x in text.splitlines() if failing in x)
        assert "WARNING" in line
        assert "cannot reach PostgreSQL: connection failed: connection to server at" in line
        figures = await asyncio.to_thread(_figures, port)
        assert figures["mdp_rollup_failing"] == 1
        assert figures["mdp_rollup_failures_total"] >= 3
        assert figures["mdp_rollup_runs_total"] == 0
        assert await asyncio.to_thread(_health, port) == 503
        assert stored(url, "market_data_ohlcv_5m") == []

        await proxy.restore()  # back on the same port: the job catches up by itself
        await wait_until(lambda: _current(url, bars), within=60, step=0.5)
        await wait_until(lambda: "the database answers again" in log.read_text(), within=10)
        assert await asyncio.to_thread(_health, port) == 200
        assert (await asyncio.to_thread(_figures, port))["mdp_rollup_failing"] == 0
        assert job.poll() is None
        await stop_in_time(job, port, log, "rollup")
    finally:
        await proxy.aclose()


def _waiting_on_the_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{MARKS}%",),
        ).fetchone()
    return row is not None and row[0] > 0


async def test_sigterm_in_the_middle_of_a_run_cancels_it_and_exits_in_time(
    plain: tuple[str, str], log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A run held by a lock (as a long one would hold it) is cancelled on the server: the job
    is gone within the supervisor's time, its transaction rolled back, and nothing marked as
    done, so that the next run does the work."""
    url, _ = plain
    marks = sql.Identifier(MARKS)
    bars = sample_bars(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 30)
    await asyncio.to_thread(write, url, bars)
    with psycopg.connect(url) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(marks))
        port = free_port()
        processes.append(job := _job(url, log, port, every="60"))
        await wait_until(lambda: _waiting_on_the_lock(url), within=30, step=0.2)
        await stop_in_time(job, port, log, "rollup")
        await asyncio.sleep(0.5)
        assert not _waiting_on_the_lock(url)  # the job's backend let go: cancelled, closed
        holder.rollback()
    with psycopg.connect(url) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(marks)).fetchone() == (0,)
    assert stored(url, "market_data_ohlcv_5m") == []


def test_a_listed_rollup_not_made_yet_is_named_with_the_fix(plain: tuple[str, str]) -> None:
    """MDP_ROLLUP_INTERVALS changed and `mdp migrate` not run since: a round fails saying which
    rollup is missing and what makes it (the role retries it), not "relation does not exist";
    once migrated, the round succeeds."""
    url, _ = plain
    settings = Settings.from_env({"MARKET_DATA_DATABASE_URL": url, "MDP_ROLLUP_INTERVALS": "5m,4h"})
    with pytest.raises(TransientError) as caught:
        asyncio.run(run_once(settings, asyncio.Event()))
    assert (
        str(caught.value) == "no rollup table of 4h (MDP_ROLLUP_INTERVALS): `mdp migrate` makes it"
    )
    migrate.upgrade(settings)
    assert asyncio.run(run_once(settings, asyncio.Event())) == "5m: 0 rows, 4h: 0 rows"
