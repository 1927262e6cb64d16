from __future__ import annotations

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
