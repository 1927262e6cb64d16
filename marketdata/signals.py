"""Ending a process cleanly on SIGTERM (containers, supervisors) or SIGINT (Ctrl-C), and in time.

A role has 5 s after SIGTERM to be gone (supervisors kill after that); what it still does then —
delivering what it published, closing connections — gets until :func:`stop_deadline`, so that a
broker or venue that does not answer cannot hold it.
"""

from __future__ import annotations

import asyncio
import signal
import weakref


class _Signalled:
    """That a loop's process was signalled, and when (loop time)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.at: float | None = None


_signalled: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Signalled] = (
    weakref.WeakKeyDictionary()
)


def _of(loop: asyncio.AbstractEventLoop) -> _Signalled:
    found = _signalled.get(loop)
    if found is None:
        found = _signalled[loop] = _Signalled()
    return found


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for the process's main loop to end cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signalled = _of(loop)

    def on_signal() -> None:
        if signalled.at is None:
            signalled.at = loop.time()
        signalled.event.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return stop


async def signalled() -> None:
    """Return once this process is signalled to stop (never, without :func:`stop_on_signals`)."""
    await _of(asyncio.get_running_loop()).event.wait()


def stop_deadline(grace_s: float) -> float | None:
    """The loop time ``grace_s`` after this process was signalled to stop; None before that."""
    at = _of(asyncio.get_running_loop()).at
    return None if at is None else at + grace_s


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never below zero); None for no deadline."""
    if deadline is None:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())
