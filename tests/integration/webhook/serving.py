"""The webhook app served in the test's own process on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from marketdata.metrics import HttpServer
from marketdata.settings import Settings
from webhook.app import create_app


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app of ``settings``, running (its lifespan too): its base URL."""
    server = HttpServer(create_app(settings), "127.0.0.1", 0, lifespan="on")
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.aclose()
