"""The faust app's configuration (no broker needed to build it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from marketdata.kafka import FETCH_MAX_WAIT_MS, consumer_config
from marketdata.settings import Settings
from processors.app import create_app


def test_faust_keeps_its_files_under_the_state_directory(tmp_path: Path) -> None:
    """Not faust's default ``<group>-data`` in the current directory (one a test run)."""
    state = tmp_path / "odd {name}"
    settings = Settings.from_env({"MDP_STATE_DIR": str(state), "MDP_PROCESS_GROUP": "g{1}"})
    app = create_app(settings)
    try:
        assert app.conf.datadir == state / "faust" / "g{1}"
        assert app.conf.appdir.parent == state / "faust" / "g{1}"
    finally:
        # Building the app builds its consumer (for the fetch-wait cap), and with it an event
        # loop of the consumer's thread besides the app's own: both are closed here.
        cast(Any, app.consumer)._thread.thread_loop.close()
        app.loop.close()


def test_the_workers_consumer_lets_the_broker_hold_a_fetch_only_briefly() -> None:
    """faust makes its consumer with fetch_max_wait_ms=1500; a fetch naming only quiet
    partitions then held back the busy ones' for that long (issue #20's intake stalls)."""
    app = create_app(Settings.from_env({}))
    try:
        thread = cast(Any, app.consumer)._thread

        async def made() -> int:  # aiokafka makes its clients inside a running loop
            client = thread._create_worker_consumer(thread.transport)
            try:
                return int(client._fetch_max_wait_ms)
            finally:
                await client.stop()

        assert asyncio.run(made()) == FETCH_MAX_WAIT_MS <= 100
        assert consumer_config(Settings.from_env({}), "g")["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
    finally:
        cast(Any, app.consumer)._thread.thread_loop.close()
        app.loop.close()
