from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from marketdata.settings import PREFIXES
from mdp.cli import cli

ROLES = ("produce", "process", "sink", "webhook", "migrate", "services", "backfill")


def test_help_lists_every_role() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for role in ROLES:
        assert role in cli.commands
        assert f"\n  {role}" in result.output


def test_rollup_help_explains_the_job_and_its_role() -> None:
    result = CliRunner().invoke(cli, ["rollup", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("Plain PostgreSQL only", "TimescaleDB", "idles until stopped",
                  "`mdp run` runs `mdp rollup --every 60`", "retried with backoff",
                  "SIGTERM/SIGINT cancels a run in progress", "--metrics-port PORT"):  # fmt: skip
        assert words in text, words
    misuse = CliRunner().invoke(cli, ["rollup", "--metrics-port", "9474"])
    assert misuse.exit_code == 2
    assert "--metrics-port needs --every" in misuse.output


def test_services_help_explains_the_backends() -> None:
    result = CliRunner().invoke(cli, ["services", "--help"])
    assert result.exit_code == 0
    assert "Docker" in result.output
    assert "native" in result.output
    assert {"up", "down", "status"} <= set(result.output.split())


@pytest.mark.parametrize(
    ("args", "words"),
    [(["produce", "ibkr", "--symbols", "AAPL"],
      "instrument 'AAPL': expected TYPE:SYMBOL:EXCHANGE:CURRENCY[:EXPIRY]"),
     (["backfill", "ibkr", "--symbol", "OPT:AAPL:SMART:USD", "--bar-size", "1m", "--start",
       "2024-03-01"], "instrument 'OPT:AAPL:SMART:USD': type must be one of")],
)  # fmt: skip
def test_a_bad_instrument_spec_fails_before_connecting(args: list[str], words: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert f"mdp: error: {words}" in result.output


def test_bad_environment_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IBKR_PORT", "not-a-port")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 1
    assert "IBKR_PORT" in result.output
    assert "Traceback" not in result.output


def test_config_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGVIEW_HMAC_SECRET", "hunter2")
    monkeypatch.setenv("MARKET_DATA_DATABASE_URL", "postgresql://md:pa55@db:5432/md")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 0
    assert "hunter2" not in result.output
    assert "pa55" not in result.output
    assert "TRADINGVIEW_HMAC_SECRET" in result.output
    assert "postgresql://md:***@db:5432/md" in result.output


def test_an_unknown_variable_is_reported_at_start_with_the_likely_name() -> None:
    """A misspelt variable must not be silently ignored; its value (maybe a secret) never shows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env |= {"MDP_SINK_BATCH_ROW": "s3cret-value", "BINANCE_API_SECRETS": "s3cret-value",
            "MDP_WHATEVER": "1", "MDP_SINK_BATCH_ROWS": "5"}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "mdp", "config"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line.split("WARNING ", 1)[1] for line in result.stderr.splitlines()
                if "WARNING" in line]  # fmt: skip
    assert warnings == [
        "mdp.cli: BINANCE_API_SECRETS is set but is not a setting of mdp: ignored;"
        " did you mean BINANCE_API_SECRET?",
        "mdp.cli: MDP_SINK_BATCH_ROW is set but is not a setting of mdp: ignored;"
        " did you mean MDP_SINK_BATCH_ROWS?",
        "mdp.cli: MDP_WHATEVER is set but is not a setting of mdp: ignored",
    ]
    assert "s3cret-value" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["status"], "mdp: error: cannot connect to PostgreSQL"),
        (["rollup"], "mdp: error: cannot reach PostgreSQL"),
        (["migrate"], "mdp: error:"),
        (
            [
                "backfill",
                "dtc",
                "--symbol",
                "ESZ4@CME",
                "--interval",
                "1m",
                "--start",
                "2024-03-01",
            ],
            "mdp: error:",
        ),
    ],
)
def test_a_failure_in_any_command_is_one_line_and_exit_1(args: list[str], said: str) -> None:
    # One handler for every command, subcommands of groups included: no traceback, one line.
    env = {**os.environ, "MARKET_DATA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
           "DTC_HISTORICAL_PORT": "1", "DTC_PORT": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mdp", *args], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("mdp: error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(said)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["rollup", "--every", "60"], ["migrate"], ["run"]])
def test_a_bad_rollup_list_fails_every_command_once_at_start(command: list[str]) -> None:
    """Not the rollup role at its first round (which `mdp run` would restart until it gave up):
    the settings refuse the list, naming the variable and what is allowed."""
    env = {
        "MDP_ROLLUP_INTERVALS": "5m,1m",
        "MARKET_DATA_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
    }
    result = CliRunner().invoke(cli, command, env=env)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("mdp: error: invalid configuration: MDP_ROLLUP_INTERVALS: ")
    assert "'1m' is not longer than the 1m bars; allowed: a comma-separated list" in line
