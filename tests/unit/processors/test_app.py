"""The faust app's configuration (no broker needed to build it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

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
