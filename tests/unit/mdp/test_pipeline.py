from __future__ import annotations

import stat
from pathlib import Path

import pytest

from marketdata.errors import ConfigError
from marketdata.settings import Settings
from mdp.pipeline import ROLES, plan


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"MDP_STATE_DIR": str(tmp_path), **env})


def test_sandbox_runs_the_fakes_first_then_every_role(tmp_path: Path) -> None:
    specs = plan(settings(tmp_path), ROLES)
    assert [s.name for s in specs] == ["fake-binance", "fake-tws", "fake-dtc", "binance", "ibkr",
                                       "dtc", "process", "webhook", "sink", "rollup"]  # fmt: skip
    by_name = {s.name: s for s in specs}
    assert by_name["fake-tws"].argv == ("-m", "sandbox.tws", "--port", "17497")
    assert by_name["fake-tws"].ready_port == 17497
    assert by_name["ibkr"].argv == ("-m", "mdp", "produce", "ibkr", "--symbols",
                                    "STK:AAPL:SMART:USD,FUT:ES:CME:USD:202412")  # fmt: skip
    assert by_name["dtc"].metrics_url == "http://127.0.0.1:9473/metrics"
    assert by_name["dtc"].env == {"MDP_PRODUCER_METRICS_PORT": "9473"}
    # producers stop first, then the processor, the sink, and last the venues
    orders = [by_name[n].stop_order for n in ("binance", "process", "sink", "fake-dtc")]
    assert orders == sorted(orders)
    assert len(set(orders)) == 4


def test_official_mode_runs_only_the_venues_configured(tmp_path: Path) -> None:
    official = settings(tmp_path, PROVIDERS_SANDBOX_MODE="official", BINANCE_SYMBOLS="BTCUSDT",
                        TRADINGVIEW_HMAC_SECRET="s3cret")  # fmt: skip
    specs = plan(official, ROLES)
    assert [s.name for s in specs] == ["binance", "process", "webhook", "sink", "rollup"]
    assert specs[0].argv[-2:] == ("--symbols", "BTCUSDT")


@pytest.mark.parametrize("mode", ["sandbox", "official"])
def test_the_rollup_job_is_a_role_of_its_own_reporting_to_the_board(
    tmp_path: Path, mode: str
) -> None:
    """`mdp rollup --every 60` with its /metrics on a port of its own, stopped with the
    producers (first: it needs neither Kafka nor the other roles)."""
    [rollup] = plan(settings(tmp_path, PROVIDERS_SANDBOX_MODE=mode), ["rollup"])
    assert rollup.argv == ("-m", "mdp", "rollup", "--every", "60", "--metrics-port", "9474")
    assert rollup.metrics_url == "http://127.0.0.1:9474/metrics"
    assert (rollup.env, rollup.stop_order, rollup.ready_port) == ({}, 0, None)
    taken = {s.metrics_url for s in plan(settings(tmp_path), ROLES) if s.name != "rollup"}
    assert rollup.metrics_url not in taken


def test_a_sandbox_webhook_gets_a_secret_of_its_own_kept_private(tmp_path: Path) -> None:
    [webhook] = plan(settings(tmp_path), ["webhook"])
    secret = (tmp_path / "webhook-secret").read_text()
    assert webhook.env == {"TRADINGVIEW_HMAC_SECRET": secret}
    assert len(secret) >= 32
    assert stat.S_IMODE((tmp_path / "webhook-secret").stat().st_mode) == 0o600
    [again] = plan(settings(tmp_path), ["webhook"])
    assert again.env == webhook.env  # the same secret on every run


def test_an_official_webhook_without_a_secret_is_left_out(tmp_path: Path) -> None:
    assert plan(settings(tmp_path, PROVIDERS_SANDBOX_MODE="official"), ["webhook"]) == []
    assert not (tmp_path / "webhook-secret").exists()


def test_unknown_roles_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown roles faust, kafka"):
        plan(settings(tmp_path), ["sink", "kafka", "faust"])
