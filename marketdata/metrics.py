"""Prometheus metrics and a readiness endpoint on a port of each role's own.

Each role builds its metrics in its own registry (several roles can share a process in tests)
and serves them with :class:`MetricsServer`: ``GET /metrics`` (Prometheus text) and
``GET /health`` (200 when ready, 503 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any, Literal

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from marketdata.errors import ServiceError


class _QuietServer(uvicorn.Server):
    # The role owns SIGTERM/SIGINT; uvicorn must not take them over.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(registry: CollectorRegistry, ready: Callable[[], bool]) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        ok = ready()
        return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/health", health)])


class HttpServer:
    """An ASGI app served by uvicorn inside a running event loop (start/aclose)."""

    def __init__(
        self, app: Any, host: str, port: int, *, lifespan: Literal["on", "off"] = "off"
    ) -> None:
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from loopback peers.
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan=lifespan,
            proxy_headers=False,
        )  # fmt: skip
        self._server = _QuietServer(config)
        self._address = (host, port)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bind here, so that a taken port is our clear error rather than uvicorn's sys.exit.
        try:
            self._socket = socket.create_server(self._address, reuse_port=False)
        except OSError as exc:
            host, port = self._address
            raise ServiceError(
                f"cannot listen on {host}:{port}: {exc.strerror} (choose another port)"
            ) from None
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="metrics-server"
        )
        # uvicorn tells that it has started only through this flag.
        while not self._server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises why it could not start (the app's lifespan failed)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0, which picks a free one)."""
        if self._socket is None:
            raise ServiceError("metrics server not started")
        port: int = self._socket.getsockname()[1]
        return port

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None


class MetricsServer(HttpServer):
    """``/metrics`` and ``/health`` of a role."""

    def __init__(
        self, registry: CollectorRegistry, ready: Callable[[], bool], host: str, port: int
    ) -> None:
        super().__init__(metrics_app(registry, ready), host, port)
