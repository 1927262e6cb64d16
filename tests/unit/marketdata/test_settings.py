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
        ("MDP_ROLLUP_INTERVALS", "5m,1m", "'1m' is not longer than the 1m bars; allowed: "),
        ("MDP_ROLLUP_INTERVALS", "5m,1w", "'1w' is not N followed by m, h or d; allowed: "),
        ("MDP_ROLLUP_INTERVALS", "5m,,1h", "'' is not N followed by m, h or d; allowed: "),
        ("MDP_BARS_TRADE_SOURCES", "binance.trade;dtc.trade", "pattern"),
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


# Every variable at a value other than its default (a new setting must be added here).
CHANGED = {
    "MARKET_DATA_DATABASE_URL": "postgresql://u@db:5432/x",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    "MDP_TOPIC_PREFIX": "t.", "MDP_TOPIC_PARTITIONS": "8", "MDP_TOPIC_REPLICATION": "3",
    "PROVIDERS_SANDBOX_MODE": "official", "TRADINGVIEW_HMAC_SECRET": "hmac secret",
    "BINANCE_API_KEY": "key", "BINANCE_API_SECRET": "s3cret", "BINANCE_API_BASE_URL": "https://b",
    "BINANCE_STREAM_URL": "wss://b:9443", "BINANCE_VISION_URL": "https://v",
    "BINANCE_TIME_UNIT": "millisecond", "IBKR_HOST": "tws", "IBKR_PORT": "4002",
    "IBKR_CLIENT_ID": "7", "IBKR_HTTP_SANDBOX_URL": "http://i", "IBKR_READONLY": "false",
    "IBKR_TIMEOUT_S": "2.5", "DTC_HOST": "sierra", "DTC_PORT": "1", "DTC_HISTORICAL_PORT": "2",
    "DTC_USERNAME": "me", "DTC_PASSWORD": "pw", "DTC_ENCODING": "json", "DTC_HEARTBEAT_S": "3",
    "BINANCE_SYMBOLS": "BTCUSDT", "IBKR_SYMBOLS": "STK:AAPL:SMART:USD", "DTC_SYMBOLS": "ESZ4",
    "MDP_PRODUCER_FLUSH_MS": "5", "MDP_PRODUCER_METRICS_PORT": "0",
    "MDP_TICKS_CHUNK_INTERVAL": "2 days", "MDP_BARS_CHUNK_INTERVAL": "1 month",
    "MDP_COMPRESS_AFTER": "3 days", "MDP_TICKS_RETENTION": "1 year",
    "MDP_BARS_RETENTION": "2 years", "MDP_ROLLUP_INTERVALS": "10m,4h",
    "MDP_PROCESS_GROUP": "pg", "MDP_PROCESS_BATCH_RECORDS": "9", "MDP_PROCESS_BATCH_MS": "9",
    "MDP_PROCESS_TAKE_MESSAGES": "9", "MDP_DEDUPE_WINDOW_KEYS": "9", "MDP_DEDUPE_WINDOW_S": "0.1",
    "MDP_PROCESS_WEB_PORT": "0", "MDP_PROCESS_COMMIT_INTERVAL_S": "0.3",
    "MDP_BARS_ENABLED": "false", "MDP_BARS_TRADE_SOURCES": "*", "MDP_BARS_INTERVALS": "5s,1h",
    "MDP_BARS_LATENESS_MS": "0", "MDP_BARS_IDLE_CLOSE_S": "0.5", "MDP_BARS_REVISE_S": "60",
    "MDP_WEBHOOK_AUTH": "passphrase,allowlist", "TRADINGVIEW_PASSPHRASE": "open sesame",
    "MDP_WEBHOOK_ALLOW": "10.0.0.0/8", "MDP_WEBHOOK_TRUSTED_PROXY_HEADER": "X-Forwarded-For",
    "MDP_WEBHOOK_MAX_BODY": "1024", "MDP_WEBHOOK_REPLAY_S": "1e-3",
    "MDP_WEBHOOK_PUBLISH_TIMEOUT_S": "1", "MDP_WEBHOOK_READ_TIMEOUT_S": "1",
    "MDP_WEBHOOK_SPOOL_DIR": "/var/spool/mdp", "MDP_WEBHOOK_SPOOL_MAX_BYTES": "2048",
    "MDP_WEBHOOK_HOST": "localhost", "MDP_WEBHOOK_PORT": "1", "MDP_SINK_GROUP": "sg",
    "MDP_WEBHOOK_FIELDS": "price=bar.close", "MDP_WEBHOOK_DEFAULT_EXCHANGE": "NASDAQ",
    "MDP_SINK_BATCH_ROWS": "1", "MDP_SINK_BATCH_MS": "1", "MDP_SINK_MAX_BACKOFF_S": "0.5",
    "MDP_METRICS_HOST": "::", "MDP_METRICS_PORT": "0", "MDP_SERVICES_BACKEND": "docker",
    "MDP_STATE_DIR": "/srv/state", "MDP_CACHE_DIR": "/srv/cache", "MDP_KAFKA_PORT": "1",
    "MDP_KAFKA_HEAP": "1g", "MDP_POSTGRES_PORT": "1", "MDP_LOG_LEVEL": "DEBUG",
}  # fmt: skip


def test_to_env_is_the_inverse_of_from_env_for_the_defaults() -> None:
    defaults = Settings.from_env({})
    assert Settings.from_env(defaults.to_env()) == defaults


def test_to_env_is_the_inverse_of_from_env_with_every_setting_changed() -> None:
    assert set(CHANGED) == {field.alias for field in Settings.model_fields.values()}
    changed = Settings.from_env(CHANGED)
    defaults = Settings.from_env({})
    same = [n for n in Settings.model_fields if getattr(changed, n) == getattr(defaults, n)]
    assert same == []
    env = changed.to_env()
    assert Settings.from_env(env) == changed
    assert env["BINANCE_API_SECRET"] == "s3cret"  # a child needs the real value, not "**********"
    assert env["IBKR_READONLY"] == "false"


def test_to_env_overrides_an_inherited_value_with_unset() -> None:
    """Over a parent environment that sets more, the child still reads exactly these settings."""
    settings = Settings.from_env({})
    assert Settings.from_env({**CHANGED, **settings.to_env()}) == settings


def test_unknown_variables_under_our_prefixes_are_named_with_the_likely_intended_one() -> None:
    environ = {
        "MDP_SINK_BATCH_ROW": "1", "KAFKA_BOOTSTRAP_SERVER": "k:9092", "BINANCE_SYMBOL": "BTC",
        "MDP_NONSENSE": "1", "KAFKA_HEAP_OPTS": "-Xmx1g", "HOME": "/root", "PATH": "/bin",
        "MDP_SINK_BATCH_ROWS": "5", "mdp_log_level": "DEBUG",
    }  # fmt: skip
    assert Settings.unknown_variables(environ) == [
        ("BINANCE_SYMBOL", "BINANCE_SYMBOLS"),
        ("KAFKA_BOOTSTRAP_SERVER", "KAFKA_BOOTSTRAP_SERVERS"),
        ("MDP_NONSENSE", None),
        ("MDP_SINK_BATCH_ROW", "MDP_SINK_BATCH_ROWS"),
    ]


def test_every_known_variable_is_known() -> None:
    assert Settings.unknown_variables(Settings.from_env({}).to_env()) == []
