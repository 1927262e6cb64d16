"""The same services from ``compose.yaml`` when a Docker engine answers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Final

from marketdata.errors import ServiceError
from mdp.services.process import ServiceStatus

SERVICES: Final = ("kafka", "timescaledb")


def engine_available() -> bool:
    """True when a Docker engine answers (the client alone is not enough)."""
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


class ComposeServices:
    """Kafka and TimescaleDB from ``compose.yaml``, published on the same loopback ports."""

    def __init__(self, compose_file: Path, kafka_port: int, postgres_port: int) -> None:
        self.compose_file = compose_file
        self.addresses = {
            "kafka": f"127.0.0.1:{kafka_port}",
            "timescaledb": f"127.0.0.1:{postgres_port}",
        }

    def _compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        if not self.compose_file.exists():
            raise ServiceError(f"{self.compose_file} not found (run from the project directory)")
        command = ["docker", "compose", "-f", str(self.compose_file), *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"`{' '.join(command)}` failed:\n{result.stderr[-2000:]}")
        return result

    def start(self) -> list[ServiceStatus]:
        self._compose("up", "--detach", "--wait", *SERVICES)
        return self.status()

    def stop(self) -> None:
        self._compose("stop", *SERVICES)

    def status(self) -> list[ServiceStatus]:
        result = self._compose("ps", "--format", "json", *SERVICES)
        states: dict[str, str] = {}
        for line in result.stdout.splitlines():
            if line.strip():
                entry = json.loads(line)
                states[entry.get("Service", "")] = entry.get("Health") or entry.get("State", "")
        return [
            ServiceStatus(name, states.get(name) in {"healthy", "running"}, self.addresses[name],
                          f"docker ({states.get(name, 'absent')})")
            for name in SERVICES
        ]  # fmt: skip
