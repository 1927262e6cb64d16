"""Serving the webhook: uvicorn, with a deadline on reading each request.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``): a client that
opens a connection and sends nothing, part of its headers, or its headers and part of a body,
holds the connection (and a task waiting for the body) for ever. Here every request must be
read whole within ``MDP_WEBHOOK_READ_TIMEOUT_S``, counted from the connection's first moment
(or, on a kept-alive connection, from the new request's first byte), so dribbling bytes does
not extend it; the time the app then takes to answer does not count. The app bounds its own
body read the same way (``AlertIntake``), for servers without this protocol.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from marketdata.settings import Settings

log = logging.getLogger(__name__)

# h11's states of the client while its request is still arriving.
_READING = (h11.IDLE, h11.SEND_BODY)


class ReadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, dropping a client that does not send its request in time."""

    read_timeout_s: ClassVar[float] = 5.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is dropped as well

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # a new request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in _READING:
            self._disarm()  # read whole (or failed and answered): the app's time is its own

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request read from the buffer here may be incomplete: it gets a deadline.
        if (
            self._deadline is None
            and not self.transport.is_closing()
            and self.conn.their_state is h11.SEND_BODY
        ):
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            # No request yet, so h11 cannot answer one; these bytes are a whole response.
            reason = f"request not received within {self.read_timeout_s:g} s".encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(reason), reason)
            )
        elif self.cycle is not None and not self.cycle.response_started:
            # The app waits for the rest of the body: it gets a disconnect, not a response.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        log.info("dropped a client that did not send its request within %g s", self.read_timeout_s)
        self.transport.close()


def protocol(read_timeout_s: float) -> type[ReadDeadlineProtocol]:
    """The protocol class with its deadline (uvicorn builds one instance per connection)."""
    return type("ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"read_timeout_s": read_timeout_s})


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(app: Any, settings: Settings) -> None:
    """Run ``app`` until SIGTERM/SIGINT, as `mdp webhook` does."""
    # uvicorn raises the signal it caught again once it has shut down gracefully, under the
    # handler it found: with the default one a clean stop would end with -SIGTERM, not 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # proxy_headers off: which forwarded header to trust is MDP_WEBHOOK_TRUSTED_PROXY_HEADER's
    # call alone (uvicorn would otherwise believe X-Forwarded-For from any loopback peer).
    uvicorn.run(app, host=settings.webhook_host, port=settings.webhook_port,
                log_level=settings.log_level.lower(), access_log=False, proxy_headers=False,
                http=protocol(settings.webhook_read_timeout_s))  # fmt: skip
