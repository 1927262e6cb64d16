"""`mdp import binance-vision`'s download mode refuses what it cannot fetch in one line on stderr
and exit code 1, before any request (the downloads themselves: test_download and the integration
test against the dump site)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mdp.cli import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2024-01"], "download mode (--start) needs --symbol and --kind"),
        (["--start", "2024-01", "--symbol", "BTCUSDT", "--kind", "klines"],
         "download mode: klines need an interval, and only klines have one"),
        (["--start", "2024-01", "--symbol", "BTCUSDT", "--kind", "bookTicker"],
         "download mode: bookTicker archives are published for futures (um, cm) only"),
        (["--start", "2024-13", "--symbol", "BTCUSDT", "--kind", "trades"],
         "download mode: month must be in 1..12"),
        (["--start", "2024-02", "--end", "2024-01", "--symbol", "BTCUSDT", "--kind", "trades"],
         "download mode: start 2024-02-01 is after end 2024-01-31"),
        (["--start", "2024-01", "--symbol", "BTCUSDT", "--kind", "trades", "x.zip"],
         "give the files (PATH...) or --start to download, not both"),
        (["--end", "2024-01", "x.zip"], "--end and --cache belong to download mode: give --start"),
    ],
)  # fmt: skip
def test_bad_download_options_are_one_line_and_exit_code_1(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["import", "binance-vision", *args])
    assert result.exit_code == 1
    assert result.stderr == f"mdp: error: {message}\n"
    assert "Traceback" not in result.output
