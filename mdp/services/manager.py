"""`mdp services up|down|status`: one entry point over the Docker and the native backends."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from marketdata.database import PLAIN_POSTGRES_WARNING, enable_timescaledb
from marketdata.errors import MarketDataError, ServiceError
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from mdp.services.docker_compose import ComposeServices, engine_available
from mdp.services.kafka_native import NativeKafka
from mdp.services.postgres_native import NativePostgres
from mdp.services.process import ServiceStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What a client needs to reach the running services."""

    kafka_bootstrap: str
    database_url: str
    timescaledb: bool
    statuses: tuple[ServiceStatus, ...]


class ServiceManager:
    def __init__(self, settings: Settings, compose_file: Path = Path("compose.yaml")) -> None:
        self.settings = settings
        self.compose_file = compose_file
        self._backend: str | None = None

    @property
    def backend(self) -> str:
        """``docker`` when chosen or when an engine answers in ``auto``; ``native`` otherwise."""
        if self._backend is None:
            chosen = self.settings.services_backend
            if chosen == "auto":
                chosen = "docker" if engine_available() else "native"
            self._backend = chosen
        return self._backend

    def _compose(self) -> ComposeServices:
        return ComposeServices(
            self.compose_file, self.settings.kafka_port, self.settings.postgres_port
        )

    def up(self) -> Endpoints:
        """Start both services (idempotent), wait until they answer, create topics and extension."""
        if self.backend == "docker":
            statuses = tuple(self._compose().start())
        else:
            statuses = (NativeKafka(self.settings).start(), NativePostgres(self.settings).start())
        if not all(status.running for status in statuses):
            raise ServiceError("services did not come up:\n" + self.describe(statuses))
        local = self.settings.model_copy(
            update={"kafka_bootstrap_servers": None, "database_url": None}
        )
        created = asyncio.run(_create_topics(local))
        if created:
            log.info("created topics %s", ", ".join(created))
        timescale = enable_timescaledb(local.database)
        if not timescale:
            log.warning(PLAIN_POSTGRES_WARNING)
        return Endpoints(local.kafka_bootstrap, local.database, timescale, statuses)

    def down(self) -> list[str]:
        """Stop what `up` started (by pid for the native services); return what was stopped."""
        if self.backend == "docker":
            self._compose().stop()
            return ["kafka", "timescaledb"]
        stopped = []
        for service in (NativeKafka(self.settings), NativePostgres(self.settings)):
            if service.stop():
                stopped.append(service.name)
        return stopped

    def status(self) -> tuple[ServiceStatus, ...]:
        if self.backend == "docker":
            return tuple(self._compose().status())
        return (NativeKafka(self.settings).status(), NativePostgres(self.settings).status())

    @staticmethod
    def describe(statuses: tuple[ServiceStatus, ...]) -> str:
        return "\n".join(status.line() for status in statuses)


async def _create_topics(settings: Settings) -> list[str]:
    # The broker accepts connections a moment before its metadata is ready.
    for attempt in range(30):
        try:
            return await ensure_topics(settings, settings.topics.all())
        except MarketDataError:
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    return []
