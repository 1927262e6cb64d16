"""`mdp process` with faust settings of the app overridden, for bench/processor.py --faust.

    BENCH_FAUST_CONF='{"stream_buffer_maxsize": 16384}' python -m bench.faust_worker

The overrides (JSON, faust setting names) replace what ``processors.app`` passes to
``faust.App``, so that a setting can be measured without a setting of the product for it. The
key ``take`` set to ``"events"`` has the agents take with faust's ``Stream.take_events`` (a
buffer each MDP_PROCESS_BATCH_MS) instead of the adaptive intake, and ``fetch_wait_s`` sets
``processors.app.FETCH_WAIT_S``, for comparison.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import faust

import processors.app
from mdp.cli import cli


def main() -> None:
    overrides: dict[str, Any] = json.loads(os.environ.get("BENCH_FAUST_CONF", "{}"))
    if overrides.pop("take", None) == "events":

        def take_events(stream: Any, max_events: int, cap_s: float) -> Any:
            return stream.take_events(max_events, cap_s)

        setattr(processors.app, "take_adaptive", take_events)  # noqa: B010
    if "fetch_wait_s" in overrides:  # faust's own is 1.0
        processors.app.FETCH_WAIT_S = float(overrides.pop("fetch_wait_s"))
    app_class = faust.App

    def app_with_overrides(*args: Any, **kwargs: Any) -> faust.App:
        return app_class(*args, **{**kwargs, **overrides})

    # processors.app looks faust.App up when it builds the app, so this reaches it.
    setattr(faust, "App", app_with_overrides)  # noqa: B010
    cli(["process", *sys.argv[1:]], prog_name="mdp")


if __name__ == "__main__":
    main()
