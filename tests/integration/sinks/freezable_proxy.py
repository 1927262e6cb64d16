"""A TCP proxy that can also freeze: connections stay open and nothing passes, as with a server
(or a network) that hangs rather than fails."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from tests.integration.tcp_proxy import TcpProxy


class FreezableProxy(TcpProxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()

    def freeze(self) -> None:
        """New connections are accepted and never answered; open ones carry nothing."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)  # so that cut() drops it even while it waits
        await self._flowing.wait()
        await super()._serve(reader, writer)

    async def _pipe(self, chunks: AsyncGenerator[bytes], writer: asyncio.StreamWriter) -> None:
        await super()._pipe(self._when_flowing(chunks), writer)

    async def _when_flowing(self, chunks: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        async with contextlib.aclosing(chunks):
            async for data in chunks:
                await self._flowing.wait()  # what was read while frozen passes once thawed
                yield data
