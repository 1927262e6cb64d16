from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

from marketdata.settings import Settings
from mdp.services.kafka_native import NativeKafka, cluster_id, server_properties


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


def test_cluster_ids_never_begin_with_a_dash_and_keep_kafkas_alphabet() -> None:
    # One plain base64 id in 64 begins with "-": 20,000 draws make that near certain.
    ids = [cluster_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert not [i for i in ids if i.startswith("-")]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)


def test_a_uuid_whose_id_would_begin_with_a_dash_is_drawn_again() -> None:
    dash = uuid.UUID(bytes=b"\xf8" + bytes(15))  # 0b111110.. is "-" in URL-safe base64
    assert base64.urlsafe_b64encode(dash.bytes).startswith(b"-")
    plain = uuid.UUID(bytes=b"\x04" + bytes(15))
    draws = iter([dash, dash, plain])
    assert cluster_id(lambda: next(draws)) == "BAAAAAAAAAAAAAAAAAAAAA"


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
