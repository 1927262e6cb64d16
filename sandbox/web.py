"""Serving a sandbox venue's aiohttp application on loopback (or any host) for as long as needed."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """``app`` listening on ``host:port`` (0: a free port): its runner, whose ``cleanup()``
    stops it, and the port it is bound to."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
