"""A service outage, wherever the session's services came from.

The native services of ``mdp services`` are ours to stop: the outage is the real thing (the
server shuts down, connections get its shutdown notice, new ones are refused). Services given in
the environment or run by testcontainers belong to someone else, or to the whole session: the
role under test then reaches the service through a cuttable proxy (:class:`KafkaProxy` rewrites
the broker's advertised address, so every connection passes it), and the outage drops the open
connections and refuses new ones, as a crashed server would.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from marketdata.settings import Settings
from mdp.services.kafka_native import NativeKafka
from mdp.services.postgres_native import NativePostgres
from tests.integration.kafka_proxy import KafkaProxy
from tests.integration.tcp_proxy import TcpProxy
from tests.services import Found


@dataclass
class Outage:
    """``settings``: what the role under test is given; ``begin()``/``end()``: the outage."""

    settings: Settings
    begin: Callable[[], object]
    end: Callable[[], object]
    how: str

    async def start(self) -> None:
        await _call(self.begin)

    async def stop(self) -> None:
        await _call(self.end)


async def _call(step: Callable[[], object]) -> None:
    result = step()
    if asyncio.iscoroutine(result):
        await result


def _stopped(settings: Settings, service: NativeKafka | NativePostgres, how: str) -> Outage:
    """The outage of a native service: stopped, then started again."""
    return Outage(settings, lambda: asyncio.to_thread(service.stop),
                  lambda: asyncio.to_thread(service.start), how)  # fmt: skip


def _native_settings() -> Settings:
    return Settings.from_env({**os.environ, "MDP_SERVICES_BACKEND": "native"})


@asynccontextmanager
async def _cut(proxy: TcpProxy, through: Callable[[], Settings], how: str) -> AsyncIterator[Outage]:
    """The outage of a service behind ``proxy``; ``through()``: the settings that reach the
    service through it (once it listens)."""
    await proxy.start()
    try:
        yield Outage(through(), proxy.cut, proxy.restore, how)
    finally:
        await proxy.aclose()


@asynccontextmanager
async def kafka_outage(settings: Settings, services: Found) -> AsyncIterator[Outage]:
    """A broker outage for a role given ``Outage.settings``."""
    if services.how == "native":
        yield _stopped(settings, NativeKafka(_native_settings()), "the native broker stopped")
        return
    proxy = KafkaProxy(settings.kafka_bootstrap)

    def through() -> Settings:
        return settings.model_copy(update={"kafka_bootstrap_servers": proxy.bootstrap})

    async with _cut(proxy, through, "the proxy to the broker cut") as outage:
        yield outage


@asynccontextmanager
async def database_outage(settings: Settings, services: Found) -> AsyncIterator[Outage]:
    """A PostgreSQL outage for a role given ``Outage.settings``."""
    if services.how == "native":
        yield _stopped(settings, NativePostgres(_native_settings()), "the native server stopped")
        return
    url = urlsplit(settings.database)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 5432)
    user = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""

    def through() -> Settings:
        proxied = urlunsplit(url._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
        return settings.model_copy(update={"database_url": proxied})

    async with _cut(proxy, through, "the proxy to the server cut") as outage:
        yield outage
