"""Apache Kafka's own image (``apache/kafka``) under testcontainers, KRaft, one node.

testcontainers-python's ``KafkaContainer`` (4.x) drives only Confluent images: its start script
calls ``/etc/confluent/docker/configure`` and ``launch``, and ``with_kraft()`` rejects a tag
below 7.0.0, so ``apache/kafka:4.1.1`` cannot run under it. This is the same technique for the
Apache image (as testcontainers-java's ``org.testcontainers.kafka.KafkaContainer`` does): the
container waits for a start script that exports the advertised listener, which needs the host
port Docker mapped, and then runs the image's ``/etc/kafka/docker/run``. The broker settings
match compose.yaml and the native broker.
"""

from __future__ import annotations

import re
from typing import Final, Self

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

KAFKA_IMAGE: Final = "apache/kafka:4.1.1"  # as compose.yaml and `mdp services` (native)
CLIENT_PORT: Final = 9092
SCRIPT: Final = "/tmp/tc-start.sh"  # noqa: S108 (inside the container)
READY: Final = "/tmp/tc-start.ready"  # noqa: S108 (written after the script is complete)
STARTED: Final = re.compile(r"Kafka Server started")  # KafkaRaftServer, once it serves


class ApacheKafkaContainer(DockerContainer):
    def __init__(self, image: str = KAFKA_IMAGE, startup_timeout_s: int = 120) -> None:
        super().__init__(image)
        self.startup_timeout_s = startup_timeout_s
        self.with_exposed_ports(CLIENT_PORT)
        self.with_envs(
            CLUSTER_ID="TLaB8io4Ra-w1ITzqG_UJA",
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            # PLAINTEXT: the host, through the mapped port; BROKER: inside the container.
            KAFKA_LISTENERS="PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_MIN_INSYNC_REPLICAS="1",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
        self.with_command(f'sh -c "while [ ! -f {READY} ]; do sleep 0.1; done; sh {SCRIPT}"')

    def get_bootstrap_server(self) -> str:
        host = self.get_container_host_ip()
        return f"{host}:{self.get_exposed_port(CLIENT_PORT)}"

    def start(self) -> Self:
        super().start()  # no wait strategy: the broker starts only once the script is there
        advertised = f"PLAINTEXT://{self.get_bootstrap_server()},BROKER://localhost:9093"
        script = f"export KAFKA_ADVERTISED_LISTENERS={advertised}\nexec /etc/kafka/docker/run\n"
        self.copy_into_container(script.encode(), SCRIPT, 0o755)
        # A second archive: the loop must not run a script that is still being written.
        self.copy_into_container(b"", READY)
        wait = LogMessageWaitStrategy(STARTED).with_startup_timeout(self.startup_timeout_s)
        wait.wait_until_ready(self)
        return self
