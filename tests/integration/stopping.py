"""Stopping a role process as a supervisor does, and checking that it is gone in time."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

# What a supervisor (and `mdp run`) gives a role between SIGTERM and SIGKILL; a producer is to
# be gone sooner (issue #15).
EXIT_WITHIN_S = 5.0
PRODUCER_EXIT_WITHIN_S = 2.0


async def terminate(
    process: subprocess.Popen[bytes], within: float = EXIT_WITHIN_S
) -> tuple[int, float]:
    """SIGTERM; the exit code and how long it took (TimeoutExpired past ``within``)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, within)
    return code, time.monotonic() - started


def released(port: int) -> bool:
    """Whether ``port`` on loopback can be bound again."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def stop_in_time(
    process: subprocess.Popen[bytes], port: int, log: Path, name: str,
    within: float = EXIT_WITHIN_S,
) -> str:  # fmt: skip
    """SIGTERM ``process`` as a supervisor does and check it is gone within ``within`` seconds,
    with code 0 and ``port`` released; the text of its ``log`` then, for the line it ends with."""
    code, took = await terminate(process, within)
    assert code == 0, f"{name} exited with code {code}"
    print(f"{name} exited {took:.1f} s after SIGTERM")
    assert released(port), f"{name} left port {port} bound"
    return await asyncio.to_thread(log.read_text, errors="replace")
