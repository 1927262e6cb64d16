"""Awaiting something until a stop is asked for, or for a bounded time at shutdown, whatever the
server at the other end does. Every role stops through these.

``asyncio.timeout`` cancels once, and a single cancellation is not always the end of an
operation: psycopg answers it by asking the server to cancel the query, and waits up to ten
seconds for a server that may be the very thing that hangs. A second cancellation makes it close
the connection instead. So the operation is cancelled until it ends, and abandoned if even that
does not end it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
CANCEL_GRACE_S = 0.25
CANCELS = 3


async def finish_within(awaitable: Awaitable[T], seconds: float) -> tuple[bool, T | None]:
    """Await ``awaitable`` for at most ``seconds`` (plus a short grace for its cancellation);
    return ``(True, result)`` when it ended in time, ``(False, None)`` when it was cancelled or
    abandoned. An exception it raised in time is raised here."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    for _ in range(CANCELS if not done else 0):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        if done:
            break
    if not done or task.cancelled():
        return False, None
    return True, task.result()


async def cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait (briefly, see :func:`finish_within`) for it to end; what it
    raises on its way out does not matter any more."""
    with contextlib.suppress(Exception):
        await finish_within(task, 0)


async def until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await ``awaitable`` unless ``stop`` is set first, in which case it is cancelled (it may
    be waiting for a server that no longer answers): ``(True, result)`` when it ended by itself,
    ``(False, None)`` when the stop came first. An exception it raised is raised here."""
    task = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        await cancel(task)
        return False, None
    return True, task.result()


async def unless_stopped(awaitable: Awaitable[object], stop: asyncio.Event) -> bool:
    """:func:`until_stopped` for what has no result: whether it ended by itself."""
    ended, _ = await until_stopped(awaitable, stop)
    return ended
