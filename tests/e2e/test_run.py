"""`mdp run`, the README's first command, as a user runs it (against the test's services)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from marketdata.rollups import rollups
from marketdata.settings import Settings
from tests.rollups import expected, plain_database, sample_bars, stored, write

VENUES = (("BINANCE", "BTCUSDT"), ("IBKR", "AAPL"), ("CME", "ESZ4"))


def _env(settings: Settings, unique: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap,
            "MARKET_DATA_DATABASE_URL": settings.database, "MDP_TOPIC_PREFIX": f"{unique}.",
            "MDP_PROCESS_GROUP": f"{unique}-process", "MDP_SINK_GROUP": f"{unique}-sink",
            "PROVIDERS_SANDBOX_MODE": "sandbox"}  # fmt: skip


def _newest(settings: Settings, exchange: str, symbol: str, since: datetime) -> object:
    """The newest tick of the series stamped after ``since``: the sandbox venues stamp trades
    with the current time, so only this run's can be that new."""
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            "SELECT max(timestamp) FROM market_data_ticks WHERE exchange = %s AND symbol = %s"
            " AND timestamp > %s",
            (exchange, symbol, since),
        ).fetchone()
    return row[0] if row else None


async def test_the_whole_pipeline_runs_until_ctrl_c_and_says_what_landed(
    settings: Settings, unique: str
) -> None:
    started = datetime.now(UTC)
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "run", "--no-services",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(settings, unique),
    )  # fmt: skip
    try:
        async with asyncio.timeout(120):
            for exchange, symbol in VENUES:  # data from each sandbox venue reaches the database
                newest = None
                while newest is None:
                    newest = await asyncio.to_thread(_newest, settings, exchange, symbol, started)
                    await asyncio.sleep(0 if newest else 1)
        run.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(run.communicate(), 90)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    text = output.decode()
    assert run.returncode == 0, text[-3000:]
    board = text[text.rindex("stopping") :]
    for role in ("fake-binance", "fake-tws", "fake-dtc", "binance", "ibkr", "dtc", "process",
                 "webhook", "sink", "rollup"):  # fmt: skip
        assert f"  {role} " in board, board
    assert "failed" not in board
    assert "published 0 records" not in board
    for exchange, symbol in VENUES:
        assert any(line.split()[:3] == ["ticks", exchange, symbol] for line in board.splitlines())
    assert "total:" in board


async def run_dtc_for_25_s(env: dict[str, str], cwd: Path | None = None) -> str:
    """`mdp run --duration 25` with the DTC venue, its producer, a processor and a sink; the
    board it ends with, once its exit code and its lines are checked."""
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdp", "run", "--no-services", "--duration", "25",
        "--roles", "dtc,process,sink", cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(run.communicate(), 120)
    text = output.decode()
    assert run.returncode == 0, text[-3000:]
    board = text[text.rindex("stopping") :]
    assert [line.split()[0] for line in board.splitlines()[2:6]] == [
        "fake-dtc", "dtc", "process", "sink"]  # fmt: skip
    return board


async def test_duration_stops_the_run_by_itself(settings: Settings, unique: str) -> None:
    board = await run_dtc_for_25_s(_env(settings, unique))
    assert "binance" not in board
    assert any(line.split()[:3] == ["ticks", "CME", "ESZ4"] for line in board.splitlines())


async def test_the_rollup_role_keeps_plain_postgresqls_rollups_and_stops_with_the_run(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    """`mdp run --roles rollup`: the supervisor starts `mdp rollup --every 60`, the board shows
    what it did, and it stops cleanly (SIGTERM, not the SIGKILL after the deadline) with the
    run; the rollup tables equal rollups computed independently. A database of its own."""
    bars = sample_bars(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 30)
    with plain_database(settings.database, unique, "5m,15m,1h,1d") as own:
        await asyncio.to_thread(write, own.database, bars)
        env = {**_env(settings, unique), "MARKET_DATA_DATABASE_URL": own.database,
               "MDP_STATE_DIR": str(tmp_path), "MDP_ROLLUP_INTERVALS": "5m,15m,1h,1d"}  # fmt: skip
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mdp", "run", "--no-services", "--duration", "8",
            "--roles", "rollup", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(run.communicate(), 120)
        text = output.decode()
        assert run.returncode == 0, text[-3000:]
        widths = {r.name: r.width for r in rollups(own.rollup_intervals)}
        for name, width in widths.items():
            assert stored(own.database, f"market_data_ohlcv_{name}") == expected(bars, width)
    board = text[text.rindex("stopping") :]
    [line] = [x for x in board.splitlines() if x.split()[:1] == ["rollup"]]
    rows = sum(len(expected(bars, width)) for width in widths.values())
    assert line.split()[1] == "stopped", line
    assert f"every 60 s, 1 runs, {rows} rows written, last " in line, line
    assert "FAILING" not in line
    assert "did not stop" not in text
    log = (tmp_path / "logs" / "rollup.log").read_text()
    assert log.rstrip().endswith("mdp.rollup_job: rollup: stopped"), log[-2000:]
