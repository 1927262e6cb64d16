from __future__ import annotations

import base64
from pathlib import Path

from marketdata.services.kafka_native import NativeKafka, cluster_id, server_properties
from marketdata.settings import Settings


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def test_server_properties_single_node_kraft_on_loopback() -> None:
    props = _properties(server_properties(Path("/data/kafka"), 19092, 19093))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == "/data/kafka"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_id_has_kafkas_format() -> None:
    first, second = cluster_id(), cluster_id()
    assert first != second
    assert len(first) == 22
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_paths_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"MDP_STATE_DIR": str(tmp_path / "state"), "MDP_CACHE_DIR": str(tmp_path / "cache"),
         "MDP_KAFKA_PORT": "29092"}
    )  # fmt: skip
    kafka = NativeKafka(settings)
    assert kafka.address == "127.0.0.1:29092"
    assert kafka.controller_port == 29093
    assert kafka.data_dir == tmp_path / "state" / "kafka" / "data"
    assert kafka.libs.parent.parent == tmp_path / "cache"
    assert b"<artifactId>kafka_2.13</artifactId>" in kafka.pom
    status = kafka.status()
    assert status.running is False
    assert status.pid is None
