from __future__ import annotations

from aiokafka.errors import (
    KafkaConnectionError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from marketdata.errors import MarketDataError, TransientError
from marketdata.kafka import consumer_config, producer_config, translate
from marketdata.settings import Settings

SETTINGS = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})


def test_producer_is_idempotent_and_waits_for_all_replicas() -> None:
    config = producer_config(SETTINGS)
    assert config["bootstrap_servers"] == "k1:9092,k2:9092"
    assert config["enable_idempotence"] is True
    assert config["acks"] == "all"
    assert config["compression_type"] == "zstd"
    assert config["linger_ms"] > 0


def test_producer_overrides_win() -> None:
    assert producer_config(SETTINGS, linger_ms=0)["linger_ms"] == 0


def test_consumer_never_auto_commits() -> None:
    config = consumer_config(SETTINGS, "sink")
    assert config["group_id"] == "sink"
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"


def test_kafka_errors_keep_their_retriable_judgement() -> None:
    assert isinstance(translate(KafkaConnectionError("down")), TransientError)
    assert translate(NotLeaderForPartitionError()).retriable is True
    fatal = translate(TopicAuthorizationFailedError())
    assert isinstance(fatal, MarketDataError)
    assert fatal.retriable is False
    assert "TopicAuthorizationFailedError" in str(fatal)
