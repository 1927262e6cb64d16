from __future__ import annotations

from pathlib import Path

import pytest

from marketdata.errors import ConfigError
from marketdata.settings import Settings


def test_defaults_point_at_the_local_services() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.database == "postgresql://mdp@127.0.0.1:15432/marketdata"
    assert settings.providers_sandbox_mode == "sandbox"
    assert settings.topics.ticks_raw == "md.ticks.raw"
    assert settings.state_dir == Path(".mdp")


def test_every_seed_variable_is_read() -> None:
    env = {
        "MARKET_DATA_DATABASE_URL": "postgresql://u:p@db:5432/md",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
        "TRADINGVIEW_HMAC_SECRET": "tv-secret",
        "BINANCE_API_KEY": "bk",
        "BINANCE_API_SECRET": "bs",
        "BINANCE_API_BASE_URL": "https://api.binance.com/",
        "IBKR_HOST": "gateway",
        "IBKR_PORT": "4002",
        "IBKR_CLIENT_ID": "17",
        "IBKR_HTTP_SANDBOX_URL": "https://localhost:5000/v1/api",
        "PROVIDERS_SANDBOX_MODE": "official",
        "MDP_TOPIC_PREFIX": "prod.",
    }
    settings = Settings.from_env(env)
    assert settings.database == "postgresql://u:p@db:5432/md"
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert settings.tradingview_hmac_secret is not None
    assert settings.tradingview_hmac_secret.get_secret_value() == "tv-secret"
    assert settings.binance_api_key is not None
    assert settings.binance_api_key.get_secret_value() == "bk"
    assert settings.binance_api_secret is not None
    assert settings.binance_api_secret.get_secret_value() == "bs"
    assert settings.binance_api_base_url == "https://api.binance.com"
    assert (settings.ibkr_host, settings.ibkr_port, settings.ibkr_client_id) == (
        "gateway",
        4002,
        17,
    )
    assert settings.ibkr_http_sandbox_url == "https://localhost:5000/v1/api"
    assert settings.providers_sandbox_mode == "official"
    assert settings.topics.dlq == "prod.md.dlq"


def test_secrets_never_show_in_repr() -> None:
    settings = Settings.from_env({"TRADINGVIEW_HMAC_SECRET": "hunter2", "BINANCE_API_SECRET": "s3"})
    assert "hunter2" not in repr(settings)
    assert "s3" not in str(settings.model_dump())


def test_empty_values_mean_unset() -> None:
    settings = Settings.from_env({"TRADINGVIEW_HMAC_SECRET": "", "IBKR_PORT": ""})
    assert settings.tradingview_hmac_secret is None
    assert settings.ibkr_port is None


def test_venue_addresses_follow_the_sandbox_mode_unless_set() -> None:
    sandbox = Settings.from_env({})
    official = Settings.from_env({"PROVIDERS_SANDBOX_MODE": "official"})
    assert (sandbox.ibkr_api_port, sandbox.dtc_ports) == (17497, (18099, 18098))
    assert (official.ibkr_api_port, official.dtc_ports) == (7497, (11099, 11098))
    chosen = Settings.from_env({"IBKR_PORT": "4002", "DTC_PORT": "1", "DTC_HISTORICAL_PORT": "2"})
    assert (chosen.ibkr_api_port, chosen.dtc_ports) == (4002, (1, 2))


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("IBKR_PORT", "abc", "valid integer"),
        ("IBKR_PORT", "70000", "less than or equal to 65535"),
        ("IBKR_CLIENT_ID", "-1", "greater than or equal to 0"),
        ("PROVIDERS_SANDBOX_MODE", "live", "'sandbox' or 'official'"),
        ("MARKET_DATA_DATABASE_URL", "mysql://x", "postgresql://"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("BINANCE_API_BASE_URL", "api.binance.com", "http"),
        ("MDP_TOPIC_PREFIX", "bad prefix!", "pattern"),
        ("MDP_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("MDP_LOG_LEVEL", "LOUD", "DEBUG"),
        ("MDP_KAFKA_HEAP", "lots", "pattern"),
    ],
)
def test_bad_values_fail_naming_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {name}: ")
    assert words in message
    assert repr(value) in message


def test_a_bad_secret_is_named_but_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TRADINGVIEW_HMAC_SECRET": "x", "IBKR_PORT": "nope"})
    assert "IBKR_PORT" in str(caught.value)
    assert "'x'" not in str(caught.value)
