"""The TimescaleDB smoke suite's server: PGlite (PostgreSQL 17 + TimescaleDB in WASM) under Node.

tools/pglite/server.mjs serves it on loopback (an ephemeral port, so that concurrent runs do not
meet); scripts/bootstrap installs its npm package. Without Node the suite is skipped; with Node
but no server (package missing, server failing to start), CI fails and elsewhere it skips with the
reason. PGlite is one backend serving one client at a time, so a test must close one connection
before it opens the next (migrations open their own).
"""

from __future__ import annotations

import re
import select
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from marketdata import migrate
from marketdata.settings import Settings
from tests.conftest import IN_CI
from tests.timescale.support import timescale_settings

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "pglite"
PACKAGE = TOOL / "node_modules" / "@unni-craftsman" / "pglite"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    log: Path


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"TimescaleDB smoke suite: {message}", pytrace=False)
    pytest.skip(message)


def _start(log: Path) -> tuple[subprocess.Popen[str], int]:
    node = shutil.which("node")
    assert node is not None
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [node, str(TOOL / "server.mjs"), "--port", "0"],
            stdout=subprocess.PIPE, stderr=errors, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    # The first line is `listening 127.0.0.1:PORT`; readline returns "" when the process dies.
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
    line = process.stdout.readline() if ready else f"nothing in {START_TIMEOUT_S:.0f} s"
    match = re.fullmatch(r"listening 127\.0\.0\.1:(\d+)\s*", line)
    if not match:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        raise RuntimeError(f"server did not start: {line!r}; {log.read_text()[-2000:]}")
    return process, int(match.group(1))


@pytest.fixture(scope="session")
def pglite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: the TimescaleDB smoke suite needs it")
    if not PACKAGE.is_dir():
        _unavailable(f"{PACKAGE.relative_to(ROOT)} is missing: run scripts/bootstrap")
    log = tmp_path_factory.mktemp("pglite") / "server.log"
    try:
        process, port = _start(log)
    except (OSError, RuntimeError) as exc:
        _unavailable(f"the PGlite server would not start: {exc}")
        raise  # unreachable: _unavailable fails or skips
    try:
        yield Server(f"postgresql://mdp@127.0.0.1:{port}/postgres", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
        print(log.read_text(errors="replace")[-4000:])


@pytest.fixture(scope="session")
def migrated(pglite: Server) -> Settings:
    """The PGlite database at the newest schema, with the suite's policies."""
    settings = timescale_settings(pglite.url)
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def empty(migrated: Settings) -> Settings:
    """The migrated database with empty market-data tables."""
    with psycopg.connect(migrated.database, autocommit=True) as conn:
        conn.execute("TRUNCATE market_data_ticks, market_data_ohlcv")
    return migrated
