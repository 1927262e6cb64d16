from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    """Where role processes write; its tail is printed, and so shown when the test fails."""
    path = tmp_path / "roles.log"
    yield path
    if path.exists():
        print(path.read_text(errors="replace")[-6000:])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Role processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
