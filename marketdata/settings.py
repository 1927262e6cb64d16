"""Settings, read from the environment once in each process's entry point and passed down.

Nothing below the entry points reads ``os.environ``. Every field is named by its environment
variable; a bad value fails at start with a :class:`ConfigError` naming that variable.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from marketdata.errors import ConfigError
from marketdata.rollup_list import parse as parse_rollups
from marketdata.topics import Topics

Port = Annotated[int, Field(ge=1, le=65535)]

DEFAULT_KAFKA_PORT: Final = 19092
DEFAULT_POSTGRES_PORT: Final = 15432
BINANCE_OFFICIAL: Final = ("https://api.binance.com", "wss://stream.binance.com:9443")
BINANCE_FAKE: Final = ("http://127.0.0.1:18090", "ws://127.0.0.1:18090")
# Binance's public data dumps, and the sandbox's loopback copy of their layout (sandbox.vision).
BINANCE_VISION: Final = ("https://data.binance.vision", "http://127.0.0.1:18091")
IBKR_OFFICIAL_PORT: Final = 7497  # TWS paper trading; IB Gateway listens on 4001/4002
IBKR_FAKE_PORT: Final = 17497
DTC_OFFICIAL_PORTS: Final = (11099, 11098)  # Sierra Chart's default DTC server ports
DTC_FAKE_PORTS: Final = (18099, 18098)
_INTERVAL = r"^[1-9][0-9]* (second|minute|hour|day|week|month|year)s?$"
# Derived bars: seconds, minutes, hours or days (weeks and months have no fixed length).
_BAR_INTERVALS = r"^ *[1-9][0-9]{0,5}[smhd]( *, *[1-9][0-9]{0,5}[smhd])* *$"
# Sources of trade ticks (`binance.trade`, `TradingView`), or `*` alone.
_TRADE_SOURCES = r"^ *(\*|[A-Za-z0-9._\-]+( *, *[A-Za-z0-9._\-]+)*) *$"
_HOST_PORT = re.compile(r"[A-Za-z0-9._\-\[\]:]+:[0-9]{1,5}")
# Variables under these prefixes are ours: one the settings do not know is most likely misspelt.
PREFIXES: Final = (
    "MDP_", "BINANCE_", "IBKR_", "DTC_", "TRADINGVIEW_", "KAFKA_", "MARKET_DATA_", "PROVIDERS_",
)  # fmt: skip
# ...except those of Kafka's own scripts (bin/kafka-*.sh), which a broker's host may well set.
FOREIGN: Final = frozenset(
    {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS",
     "KAFKA_GC_LOG_OPTS", "KAFKA_JMX_OPTS", "KAFKA_DEBUG", "KAFKA_HOME", "KAFKA_LOG_DIR"}
)  # fmt: skip


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mdp"


class Settings(BaseModel):
    """Every setting of every role, each under the name of its environment variable."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # Where the data goes.
    database_url: str | None = Field(None, alias="MARKET_DATA_DATABASE_URL")
    kafka_bootstrap_servers: str | None = Field(None, alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_prefix: str = Field("", alias="MDP_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._\-]*$")
    topic_partitions: int = Field(4, alias="MDP_TOPIC_PARTITIONS", ge=1, le=1000)
    topic_replication: int = Field(1, alias="MDP_TOPIC_REPLICATION", ge=1, le=16)

    # Venues. Secrets are SecretStr so that they never reach a log or a repr.
    providers_sandbox_mode: Literal["sandbox", "official"] = Field(
        "sandbox", alias="PROVIDERS_SANDBOX_MODE"
    )
    tradingview_hmac_secret: SecretStr | None = Field(None, alias="TRADINGVIEW_HMAC_SECRET")
    binance_api_key: SecretStr | None = Field(None, alias="BINANCE_API_KEY")
    binance_api_secret: SecretStr | None = Field(None, alias="BINANCE_API_SECRET")
    binance_api_base_url: str | None = Field(None, alias="BINANCE_API_BASE_URL")
    binance_stream_url: str | None = Field(None, alias="BINANCE_STREAM_URL")
    binance_vision_url: str | None = Field(None, alias="BINANCE_VISION_URL")
    # The time unit asked of Binance's streams and REST (Binance's own default is milliseconds).
    # Microseconds by default: the public dumps carry µs since 2025 and a trade's time is in its
    # key, so live, REST and dump copies of one trade are stored once only in the same unit.
    binance_time_unit: Literal["millisecond", "microsecond"] = Field(
        "microsecond", alias="BINANCE_TIME_UNIT"
    )
    ibkr_host: str = Field("127.0.0.1", alias="IBKR_HOST", min_length=1)
    ibkr_port: Port | None = Field(None, alias="IBKR_PORT")
    ibkr_client_id: int = Field(1, alias="IBKR_CLIENT_ID", ge=0, le=2**31 - 1)
    ibkr_http_sandbox_url: str | None = Field(None, alias="IBKR_HTTP_SANDBOX_URL")
    ibkr_readonly: bool = Field(True, alias="IBKR_READONLY")
    ibkr_timeout_s: float = Field(10.0, alias="IBKR_TIMEOUT_S", gt=0, le=300)
    dtc_host: str = Field("127.0.0.1", alias="DTC_HOST", min_length=1)
    dtc_port: Port | None = Field(None, alias="DTC_PORT")
    dtc_historical_port: Port | None = Field(None, alias="DTC_HISTORICAL_PORT")
    dtc_username: str = Field("", alias="DTC_USERNAME")
    dtc_password: SecretStr | None = Field(None, alias="DTC_PASSWORD")
    dtc_encoding: Literal["binary", "json"] = Field("binary", alias="DTC_ENCODING")
    dtc_heartbeat_s: int = Field(10, alias="DTC_HEARTBEAT_S", ge=1, le=300)
    # What `mdp run` subscribes to; in official mode a venue runs only when its list is set.
    binance_symbols: str | None = Field(None, alias="BINANCE_SYMBOLS", min_length=1)
    ibkr_symbols: str | None = Field(None, alias="IBKR_SYMBOLS", min_length=1)
    dtc_symbols: str | None = Field(None, alias="DTC_SYMBOLS", min_length=1)
    # The time cap of a producer's batching: an instrument's records gather while a send of it
    # is in flight (every Kafka message costs the processor ~130 µs), at most this long.
    producer_flush_ms: int = Field(50, alias="MDP_PRODUCER_FLUSH_MS", ge=1, le=10_000)
    producer_metrics_port: int | None = Field(
        None, alias="MDP_PRODUCER_METRICS_PORT", ge=0, le=65535
    )

    # Storage (`mdp migrate`): TimescaleDB chunking and policies, used when the extension exists.
    ticks_chunk_interval: str = Field("1 day", alias="MDP_TICKS_CHUNK_INTERVAL", pattern=_INTERVAL)
    bars_chunk_interval: str = Field("7 days", alias="MDP_BARS_CHUNK_INTERVAL", pattern=_INTERVAL)
    compress_after: str | None = Field(None, alias="MDP_COMPRESS_AFTER", pattern=_INTERVAL)
    ticks_retention: str | None = Field(None, alias="MDP_TICKS_RETENTION", pattern=_INTERVAL)
    bars_retention: str | None = Field(None, alias="MDP_BARS_RETENTION", pattern=_INTERVAL)
    # Rollups of stored 1m bars (marketdata/rollups.py): continuous aggregates on TimescaleDB,
    # tables kept by `mdp rollup` on plain PostgreSQL; both made by `mdp migrate`.
    rollup_intervals: str = Field("5m,15m,1h,1d", alias="MDP_ROLLUP_INTERVALS")

    # Processors (`mdp process`).
    process_group: str = Field("mdp-processor", alias="MDP_PROCESS_GROUP", min_length=1)
    process_batch_records: int = Field(500, alias="MDP_PROCESS_BATCH_RECORDS", ge=1, le=100_000)
    process_batch_ms: int = Field(200, alias="MDP_PROCESS_BATCH_MS", ge=1, le=60_000)
    process_take_messages: int = Field(1000, alias="MDP_PROCESS_TAKE_MESSAGES", ge=1, le=100_000)
    dedupe_window_keys: int = Field(1_000_000, alias="MDP_DEDUPE_WINDOW_KEYS", ge=1)
    dedupe_window_s: float = Field(600.0, alias="MDP_DEDUPE_WINDOW_S", gt=0)
    process_web_port: int = Field(6066, alias="MDP_PROCESS_WEB_PORT", ge=0, le=65535)
    process_commit_interval_s: float = Field(
        1.0, alias="MDP_PROCESS_COMMIT_INTERVAL_S", gt=0, le=60
    )
    # Bars derived from trades (processors/bars.py), of the trades of MDP_BARS_TRADE_SOURCES only:
    # per venue the one source carrying each of its trades once, so not binance.aggTrade (the
    # trades of binance.trade, aggregated) nor dtc.snapshot (a trade dtc.trade carries too); IB's
    # producer subscribes to AllLast or Last, never both. `*`: every source.
    bars_enabled: bool = Field(True, alias="MDP_BARS_ENABLED")
    bars_trade_sources: str = Field(
        "binance.trade,dtc.trade,ibkr.AllLast,ibkr.Last,TradingView",
        alias="MDP_BARS_TRADE_SOURCES", pattern=_TRADE_SOURCES,
    )  # fmt: skip
    bars_intervals: str = Field("1s,1m", alias="MDP_BARS_INTERVALS", pattern=_BAR_INTERVALS)
    bars_lateness_ms: int = Field(2000, alias="MDP_BARS_LATENESS_MS", ge=0, le=86_400_000)
    bars_idle_close_s: float = Field(5.0, alias="MDP_BARS_IDLE_CLOSE_S", gt=0, le=86_400)
    bars_revise_s: float = Field(600.0, alias="MDP_BARS_REVISE_S", ge=0, le=7 * 86_400)

    # Webhook (`mdp webhook`).
    webhook_auth: str = Field(
        "signature",
        alias="MDP_WEBHOOK_AUTH",
        pattern=r"^(signature|passphrase|allowlist)(,(signature|passphrase|allowlist))*$",
    )
    tradingview_passphrase: SecretStr | None = Field(None, alias="TRADINGVIEW_PASSPHRASE")
    webhook_allow: str = Field("tradingview", alias="MDP_WEBHOOK_ALLOW", min_length=1)
    webhook_proxy_header: str | None = Field(None, alias="MDP_WEBHOOK_TRUSTED_PROXY_HEADER")
    webhook_max_body: int = Field(65_536, alias="MDP_WEBHOOK_MAX_BODY", ge=256, le=10_485_760)
    webhook_replay_s: float = Field(300.0, alias="MDP_WEBHOOK_REPLAY_S", gt=0)
    webhook_publish_timeout_s: float = Field(
        2.0, alias="MDP_WEBHOOK_PUBLISH_TIMEOUT_S", gt=0, le=2.5
    )
    webhook_read_timeout_s: float = Field(5.0, alias="MDP_WEBHOOK_READ_TIMEOUT_S", gt=0, le=300)
    webhook_spool_dir: Path | None = Field(None, alias="MDP_WEBHOOK_SPOOL_DIR")
    webhook_spool_max_bytes: int = Field(
        64 * 1024 * 1024, alias="MDP_WEBHOOK_SPOOL_MAX_BYTES", ge=1024
    )
    webhook_host: str = Field("127.0.0.1", alias="MDP_WEBHOOK_HOST", min_length=1)
    # `price=bar.close|close,symbol=ticker`: checked when the app is built (webhook/mapping.py).
    webhook_fields: str | None = Field(None, alias="MDP_WEBHOOK_FIELDS")
    # The exchange of an alert that names none (neither `exchange` nor `EXCHANGE:SYMBOL`).
    webhook_default_exchange: str = Field(
        "TRADINGVIEW", alias="MDP_WEBHOOK_DEFAULT_EXCHANGE", min_length=1, max_length=32
    )
    webhook_port: Port = Field(8080, alias="MDP_WEBHOOK_PORT")

    # Sink (`mdp sink`).
    sink_group: str = Field("mdp-sink", alias="MDP_SINK_GROUP", min_length=1)
    sink_batch_rows: int = Field(20_000, alias="MDP_SINK_BATCH_ROWS", ge=1, le=1_000_000)
    sink_batch_ms: int = Field(250, alias="MDP_SINK_BATCH_MS", ge=1, le=60_000)
    sink_max_backoff_s: float = Field(30.0, alias="MDP_SINK_MAX_BACKOFF_S", gt=0, le=600)
    metrics_host: str = Field("127.0.0.1", alias="MDP_METRICS_HOST", min_length=1)
    metrics_port: int = Field(9464, alias="MDP_METRICS_PORT", ge=0, le=65535)

    # Local services (`mdp services`) and housekeeping.
    services_backend: Literal["auto", "docker", "native"] = Field(
        "auto", alias="MDP_SERVICES_BACKEND"
    )
    state_dir: Path = Field(Path(".mdp"), alias="MDP_STATE_DIR")
    cache_dir: Path = Field(default_factory=_default_cache_dir, alias="MDP_CACHE_DIR")
    kafka_port: Port = Field(DEFAULT_KAFKA_PORT, alias="MDP_KAFKA_PORT")
    kafka_heap: str = Field("512m", alias="MDP_KAFKA_HEAP", pattern=r"^[0-9]+[mMgG]$")
    postgres_port: Port = Field(DEFAULT_POSTGRES_PORT, alias="MDP_POSTGRES_PORT")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="MDP_LOG_LEVEL")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("rollup_intervals")
    @classmethod
    def _rollups(cls, value: str) -> str:
        # Checked here, not at a role's first round: a bad list fails every command once, at
        # start, instead of `mdp run` restarting the rollup role until it gives up.
        parse_rollups(value)
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        servers = [part.strip() for part in value.split(",") if part.strip()]
        bad = [server for server in servers if not _HOST_PORT.fullmatch(server)]
        if not servers or bad:
            raise ValueError(f"must be host:port[,host:port...], bad entries: {bad or [value]}")
        return ",".join(servers)

    @field_validator("binance_stream_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return value.rstrip("/") if value else value

    @field_validator("binance_api_base_url", "binance_vision_url", "ibkr_http_sandbox_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def kafka_bootstrap(self) -> str:
        """The brokers to use: the variable when set, else the local broker of `mdp services`."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def database(self) -> str:
        """The database to use: the variable when set, else the local server of `mdp services`."""
        return self.database_url or f"postgresql://mdp@127.0.0.1:{self.postgres_port}/marketdata"

    @property
    def binance_rest(self) -> str:
        """REST base: the variable when set, else Binance (official) or the local fake (sandbox)."""
        if self.binance_api_base_url:
            return self.binance_api_base_url
        return BINANCE_OFFICIAL[0] if self.providers_sandbox_mode == "official" else BINANCE_FAKE[0]

    @property
    def binance_stream(self) -> str:
        if self.binance_stream_url:
            return self.binance_stream_url
        return BINANCE_OFFICIAL[1] if self.providers_sandbox_mode == "official" else BINANCE_FAKE[1]

    @property
    def binance_vision(self) -> str:
        """Where the public data dumps are downloaded from: the variable when set, else
        data.binance.vision (official) or the sandbox's dump server."""
        if self.binance_vision_url:
            return self.binance_vision_url
        return BINANCE_VISION[0] if self.providers_sandbox_mode == "official" else BINANCE_VISION[1]

    @property
    def ibkr_api_port(self) -> int:
        """TWS/Gateway API port: the variable when set, else TWS paper (official) or the fake."""
        if self.ibkr_port is not None:
            return self.ibkr_port
        return IBKR_OFFICIAL_PORT if self.providers_sandbox_mode == "official" else IBKR_FAKE_PORT

    @property
    def dtc_ports(self) -> tuple[int, int]:
        """(market data, historical data) ports of the DTC server, like ``ibkr_api_port``."""
        live, history = (
            DTC_OFFICIAL_PORTS if self.providers_sandbox_mode == "official" else DTC_FAKE_PORTS
        )
        return self.dtc_port or live, self.dtc_historical_port or history

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``environ`` (default ``os.environ``); empty values mean unset."""
        source = os.environ if environ is None else environ
        names = {field.alias for field in cls.model_fields.values()}
        values: dict[str, Any] = {k: v for k, v in source.items() if k in names and v != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, values)) from None

    def to_env(self) -> dict[str, str]:
        """The inverse of :meth:`from_env`: every setting under its variable, so that a role
        started with this environment (over any other) reads exactly these settings. Unset
        values are empty (which ``from_env`` reads as unset, overriding an inherited value);
        secrets are their real values, so the result is for a child's environment, not a log."""
        return {
            str(field.alias): _env_value(getattr(self, name))
            for name, field in type(self).model_fields.items()
        }

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
        """Variables of ``environ`` under the project's prefixes that no setting reads, each with
        the closest name a setting does read (when one is close), sorted by name."""
        names = sorted(str(field.alias) for field in cls.model_fields.values())
        return [
            (name, next(iter(difflib.get_close_matches(name, names, n=1, cutoff=0.75)), None))
            for name in sorted(environ)
            if name.startswith(PREFIXES) and name not in names and name not in FOREIGN
        ]


def _env_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(exc: ValidationError, values: Mapping[str, Any]) -> str:
    secret = {f.alias for f in Settings.model_fields.values() if "SecretStr" in repr(f.annotation)}
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        shown = "" if name in secret or name not in values else f" (got {values[name]!r})"
        lines.append(f"{name}: {error['msg']}{shown}")
    return "invalid configuration: " + "; ".join(lines)
