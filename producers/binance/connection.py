"""One Binance stream connection, opened and closed without holding the process.

binance-connector is synchronous: connecting, subscribing and closing block, and its reader is a
thread of its own. Everything blocking runs in daemon threads whose futures the reconnect loop may
stop waiting for (it cancels them at a stop or a timeout), so a process told to stop never waits
for a venue that does not answer (a connect hanging until its timeout, a close frame never
acknowledged), and no thread keeps it alive. A connection is
closed by sending Binance a close frame, giving it a moment to answer, then shutting the socket
down, which wakes the reader at once, and only then closing the socket: closing it under a
reader still blocked in ``recv`` is what logged ``Bad file descriptor``. The connector's own log
lines about a connection we close on purpose are debug lines, not errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, Final, TypeVar

from producers.binance.connector import StreamClientBase

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a closing connection waits for Binance's answer to its close frame, then for its
# reader thread once the socket is shut down.
POLITE_CLOSE_S: Final = 0.5
READER_EXIT_S: Final = 2.0


class Stopped(Exception):  # a signal to unwind, not an error
    """Raised in a thread whose work was abandoned (a gap fill cancelled), to end it."""


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """The connector's logger for one connection. A connection lost is a warning, not an error:
    the reconnect loop replaces it (and says so); once we close it on purpose, what the connector
    says about it going away is expected, so it is logged at debug."""

    def __init__(self, number: int) -> None:
        super().__init__(logging.getLogger("producers.binance.connector"), {"connection": number})
        self.closing = False

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        level = logging.DEBUG if self.closing else min(level, logging.WARNING)
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"connection {self.extra['connection']}: {msg}", kwargs  # type: ignore[index]


class StreamClient(StreamClientBase):  # type: ignore[misc]
    """binance-connector's stream client with a daemon reader thread: a reader blocked on a
    socket that no longer answers must not keep a stopping process alive."""

    def __init__(self, *args: Any, connection_log: ConnectionLog, **kwargs: Any) -> None:
        self.connection_log = connection_log
        super().__init__(*args, logger=connection_log, **kwargs)

    def _initialize_socket(self, *args: Any) -> Any:
        manager = super()._initialize_socket(*args)
        manager.daemon = True
        return manager


def in_thread(work: Callable[[], T], name: str) -> asyncio.Future[T]:
    """``work()`` in a daemon thread, as a future of the running loop. A thread that finishes
    after the loop has closed drops its result: nobody waits for it any more."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except Exception as exc:  # handed to the awaiting coroutine, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def kept_or_closed(opening: asyncio.Future[StreamClient]) -> StreamClient:
    """The connection ``opening`` gives. When the wait for it is cancelled (a stop, a connect
    timeout), the thread goes on; a connection it completes later is closed, not leaked."""
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_late)
        raise


def _close_late(done: asyncio.Future[StreamClient]) -> None:
    if done.cancelled() or done.exception() is not None:
        return  # exception() also marks it retrieved: no "never retrieved" error
    close_later(done.result())


def close_blocking(client: StreamClient) -> None:
    """Close a connection: close frame, a moment for Binance's answer, socket shutdown (the
    reader wakes), the reader's exit, then the socket itself."""
    client.connection_log.closing = True
    manager = client.socket_manager
    ws = manager.ws
    with contextlib.suppress(Exception):  # a connection already gone cannot be closed twice
        if ws.connected:
            ws.send_close()
    manager.join(POLITE_CLOSE_S)
    if manager.is_alive() and ws.sock is not None:
        with contextlib.suppress(OSError):
            ws.sock.shutdown(socket.SHUT_RDWR)
        manager.join(READER_EXIT_S)
    with contextlib.suppress(Exception):
        ws.shutdown()
    if manager.is_alive():
        log.warning("the reader of a closed stream connection did not exit (a daemon: ignored)")


def close_later(client: StreamClient) -> None:
    """Close a connection from any thread, without waiting."""
    threading.Thread(
        target=close_blocking, args=(client,), name="binance-close", daemon=True
    ).start()
