from __future__ import annotations

import re
import time
from pathlib import Path

from marketdata.settings import Settings
from mdp.board import Board, parse_metrics
from mdp.supervisor import RoleSpec, Supervisor

SINK_METRICS = """# HELP mdp_sink_rows_written_total Rows inserted or updated
# TYPE mdp_sink_rows_written_total counter
mdp_sink_rows_written_total{table="market_data_ticks"} 1200.0
mdp_sink_rows_written_total{table="market_data_ohlcv"} 34.0
mdp_sink_rows_written_created{table="market_data_ticks"} 1.7e9
# TYPE mdp_sink_dead_letters_total counter
mdp_sink_dead_letters_total 2.0
"""


def test_metrics_are_summed_by_name_and_by_label() -> None:
    figures = parse_metrics(SINK_METRICS)
    assert figures["mdp_sink_rows_written_total"] == 1234
    assert figures["mdp_sink_rows_written_total:market_data_ticks"] == 1200
    assert figures["mdp_sink_rows_written_total:market_data_ohlcv"] == 34
    assert figures["mdp_sink_dead_letters_total"] == 2
    assert not any(name.startswith("mdp_sink_rows_written_created") for name in figures)


def board(tmp_path: Path) -> Board:
    specs = [RoleSpec("fake-tws", ("-m", "x")), RoleSpec("binance", ("-m", "y")),
             RoleSpec("sink", ("-m", "z"))]  # fmt: skip
    return Board(Supervisor(specs, tmp_path), Settings.from_env({}), "mdp run (sandbox)")


def test_a_line_per_role_with_its_own_figures(tmp_path: Path) -> None:
    shown = board(tmp_path)
    shown.figures["sink"] = parse_metrics(SINK_METRICS)
    shown.figures["binance"] = parse_metrics(
        'mdp_producer_records_total{stage="binance.live"} 5000\n'
        'mdp_producer_dead_letters_total{stage="binance.live"} 1\n'
    )
    shown.lags["sink"] = 7
    title, fake, binance, sink = shown.lines()
    assert title.startswith("mdp run (sandbox)  00:00:0")
    assert fake.split() == ["fake-tws", "starting", "pid", "-", "sandbox", "venue"]
    assert binance.endswith("published 5,000 records, 1 dead letters")
    assert sink.endswith("rows written 1,200 ticks, 34 bars; 2 dead letters, lag 7")


def test_a_terminal_gets_the_board_redrawn_in_place(tmp_path: Path) -> None:
    shown = board(tmp_path)
    first = shown.draw(tty=True)
    second = shown.draw(tty=True)
    assert first.startswith("\x1b[2K")  # nothing to move up over yet
    assert second.startswith("\x1b[4F")  # up over the four lines drawn before
    assert shown.draw(tty=False).count("\n") == 4
    assert "\x1b" not in shown.draw(tty=False)


def rollup_board(tmp_path: Path, metrics: str) -> str:
    shown = Board(Supervisor([RoleSpec("rollup", ("-m", "mdp"))], tmp_path), Settings.from_env({}),
                  "mdp run (sandbox)")  # fmt: skip
    shown.figures["rollup"] = parse_metrics(metrics)
    _, line = shown.lines()
    return line


def test_the_rollup_line_says_how_current_the_rollups_are(tmp_path: Path) -> None:
    ran = time.time() - 12
    figures = (
        "mdp_rollup_runs_total 7\nmdp_rollup_every_seconds 60\n"
        'mdp_rollup_rows_written_total{rollup="5m"} 1200\n'
        'mdp_rollup_rows_written_total{rollup="1d"} 34\n'
        f"mdp_rollup_last_run_timestamp_seconds {ran}\n"
    )
    line = rollup_board(tmp_path, figures + "mdp_rollup_failures_total 0\nmdp_rollup_failing 0\n")
    assert line.split()[:2] == ["rollup", "starting"]
    assert re.search(r"every 60 s, 7 runs, 1,234 rows written, last 1[2-9] s ago$", line), line
    # A database that is away: said on the line, with how often it failed.
    line = rollup_board(tmp_path, figures + "mdp_rollup_failures_total 3\nmdp_rollup_failing 1\n")
    assert line.endswith("; FAILING, retrying (3 failures; see its log)")
    line = rollup_board(tmp_path, figures + "mdp_rollup_failures_total 3\nmdp_rollup_failing 0\n")
    assert line.endswith("s ago; 3 failures")
    never = rollup_board(tmp_path, "mdp_rollup_every_seconds 60\nmdp_rollup_failing 1\n"
                         "mdp_rollup_failures_total 1\n")  # fmt: skip
    assert "0 runs, 0 rows written, not run yet; FAILING" in never


def test_the_rollup_line_on_timescaledb_says_the_policies_keep_them(tmp_path: Path) -> None:
    line = rollup_board(tmp_path, "mdp_rollup_idle 1\nmdp_rollup_every_seconds 60\n")
    assert line.endswith("TimescaleDB: continuous aggregates, kept by their policies (idle)")
