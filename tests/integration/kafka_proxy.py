"""A cuttable proxy in front of the real broker, for a broker outage without stopping it.

A plain TCP proxy is not enough for Kafka: the broker's metadata names its own address, and a
client connects there directly after bootstrapping. This one rewrites that address, in every
response frame, to its own, so that all of a client's connections go through it and
:meth:`cut` leaves the client with no broker at all.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncGenerator

from tests.integration.tcp_proxy import TcpProxy


class KafkaProxy(TcpProxy):
    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        super().__init__(host, int(port))

    @property
    def bootstrap(self) -> str:
        return f"{self.target[0]}:{self.port}"

    async def start(self) -> None:
        await super().start()
        # The broker's (host, port) as metadata and coordinator responses carry it: the host
        # string, then the port as a big-endian int32, in every version of those responses.
        host = self.target[0].encode()
        self._broker = host + struct.pack(">i", self.target[1])
        self._proxied = host + struct.pack(">i", self.port)

    async def _responses(self, reader: asyncio.StreamReader) -> AsyncGenerator[bytes]:
        """Whole response frames (an int32 size, then that many bytes), the address rewritten;
        the rewrite keeps every length."""
        while True:
            size = await reader.readexactly(4)
            body = await reader.readexactly(struct.unpack(">i", size)[0])
            yield size + body.replace(self._broker, self._proxied)
