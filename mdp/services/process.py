"""Small process helpers shared by the native services: pid files, port probes, stopping by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    running: bool
    address: str
    detail: str = ""
    pid: int | None = None
    log: Path | None = None

    def line(self) -> str:
        state = "up" if self.running else "down"
        parts = [f"{self.name:<9} {state:<5} {self.address}"]
        if self.pid:
            parts.append(f"pid {self.pid}")
        if self.log:
            parts.append(f"log {self.log}")
        if self.detail:
            parts.append(self.detail)
        return "  ".join(parts)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """Wait until ``host:port`` accepts connections; give up early once ``alive()`` says no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if not alive():
            return False
        time.sleep(0.2)
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(") ", 1)[1][:1] != "Z"
    return True


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in ``pidfile`` when that process still runs, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL: stop exactly the process we started."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
