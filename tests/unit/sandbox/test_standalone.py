"""Each venue runs standalone as `python -m sandbox.<venue>`, as `mdp run` and a container start
it, and listens on the address it is told (``--host``: 0.0.0.0 in a container)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

HOST = "127.0.0.2"  # loopback too, but not the default: only --host puts the venue there


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as client:
            client.settimeout(0.5)
            if client.connect_ex((HOST, port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("venue", ["binance", "tws", "dtc", "vision"])
def test_a_venue_runs_as_a_module_on_the_host_given(venue: str) -> None:
    port = _free_port()
    extra = ["--historical-port", str(_free_port())] if venue == "dtc" else []
    process = subprocess.Popen(
        [sys.executable, "-m", f"sandbox.{venue}", "--host", HOST, "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert _answers(port, within_s=20), f"sandbox.{venue} is not listening on {HOST}:{port}"
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=10)
