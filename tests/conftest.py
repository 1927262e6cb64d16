from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketdata.kafka import admin_client
from marketdata.settings import Settings
from tests.services import Found, find_services

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(ROOT).parts[0]
        if folder in {"integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def services() -> Iterator[Found]:
    """Real Kafka and PostgreSQL for the whole session; in CI a missing one fails the run."""
    try:
        with find_services() as found:
            yield found
    except Exception as exc:
        message = f"Kafka/PostgreSQL unavailable: {type(exc).__name__}: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def unique() -> str:
    """A name no other test uses: topics, groups and tables are isolated by it."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(services: Found, unique: str) -> Iterator[Settings]:
    """Settings pointing at the session's services, with topics of this test's own, deleted
    afterwards: a broker left with every test's partitions (thousands in one run) outgrows its
    heap and restarts slowly."""
    own = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
            "MARKET_DATA_DATABASE_URL": services.database_url,
            "MDP_TOPIC_PREFIX": f"{unique}.",
        }
    )
    yield own
    # In a thread of its own: the test's event loop may still be open in this one.
    cleaner = threading.Thread(target=asyncio.run, args=(_delete_topics(own),))
    cleaner.start()
    cleaner.join()


async def _delete_topics(settings: Settings) -> None:
    with contextlib.suppress(Exception):  # a broker a test stopped is no reason to fail
        async with asyncio.timeout(20), admin_client(settings) as admin:
            names = [n for n in await admin.list_topics() if n.startswith(settings.topic_prefix)]
            if names:
                await admin.delete_topics(names)


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
