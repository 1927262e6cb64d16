from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from tests.integration.processors.support import free_port


@pytest.fixture
async def processor_settings(settings: Settings, unique: str) -> Settings:
    await ensure_topics(settings, settings.topics.all())
    return settings.model_copy(
        update={"process_group": f"{unique}-processor", "process_web_port": free_port()}
    )


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "workers.log"
    yield path
    if path.exists():
        print(path.read_text(errors="replace")[-6000:])  # shown when the test fails


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
