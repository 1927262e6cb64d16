"""A loopback TCP proxy that a test can cut and restore: a server outage without stopping it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a crashed server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def restore(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(self._chunks(reader), upstream_writer),
            self._pipe(self._responses(upstream_reader), writer),
        )

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncGenerator[bytes]:
        while data := await reader.read(65536):
            yield data

    def _responses(self, reader: asyncio.StreamReader) -> AsyncGenerator[bytes]:
        """What the server sends, as the client gets it: here unchanged; a subclass that must
        rewrite it (the Kafka proxy) overrides this."""
        return self._chunks(reader)

    async def _pipe(self, chunks: AsyncGenerator[bytes], writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            async with contextlib.aclosing(chunks):  # also when the writer fails first
                async for data in chunks:
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()
        self._links.discard(writer)
