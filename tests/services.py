"""Where the tests find Kafka and PostgreSQL: the environment, else Docker, else native.

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``MARKET_DATA_DATABASE_URL`` when set;
2. testcontainers when a Docker engine answers;
3. the native services of ``mdp services`` (started here if they are not running).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from testcontainers.community.postgres import PostgresContainer

from marketdata.settings import Settings
from mdp.services.docker_compose import engine_available
from mdp.services.manager import ServiceManager
from tests.kafka_container import ApacheKafkaContainer

TIMESCALE_IMAGE = "timescale/timescaledb:2.17.2-pg16"


@dataclass(frozen=True, slots=True)
class Found:
    kafka_bootstrap: str
    database_url: str
    how: str


@contextlib.contextmanager
def _containers(need_kafka: bool, need_database: bool) -> Iterator[tuple[str | None, str | None]]:
    with contextlib.ExitStack() as stack:
        kafka = database = None
        if need_kafka:
            kafka = stack.enter_context(ApacheKafkaContainer())  # Kafka 4.1.1, as compose
        if need_database:
            database = stack.enter_context(
                PostgresContainer(
                    TIMESCALE_IMAGE, username="mdp", password="mdp", dbname="marketdata",
                    driver=None,
                )
            )  # fmt: skip
        yield (
            kafka.get_bootstrap_server() if kafka else None,
            database.get_connection_url() if database else None,
        )


@contextlib.contextmanager
def find_services() -> Iterator[Found]:
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    env_database = os.environ.get("MARKET_DATA_DATABASE_URL") or None
    if env_kafka and env_database:
        yield Found(env_kafka, env_database, "environment")
        return
    if engine_available():
        with _containers(env_kafka is None, env_database is None) as (kafka, database):
            yield Found(env_kafka or kafka or "", env_database or database or "", "testcontainers")
        return
    settings = Settings.from_env({**os.environ, "MDP_SERVICES_BACKEND": "native"})
    endpoints = ServiceManager(settings).up()
    yield Found(
        env_kafka or endpoints.kafka_bootstrap, env_database or endpoints.database_url, "native"
    )
