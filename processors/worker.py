"""`mdp process`: check the topics, then run one faust worker until SIGTERM/SIGINT.

faust's own shutdown waits on the broker (a last commit, the producer's flush, the consumer
group's leave) and, with the broker gone, retries for minutes. The worker here gives it
:data:`SHUTDOWN_S` seconds, then exits anyway: exiting commits nothing, so what was in hand is
processed again by the next worker, as after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import Any

import faust

from marketdata.errors import ConfigError
from marketdata.kafka import admin_client
from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from marketdata.stopping import unless_stopped
from processors.app import InHand, create_app, faust_datadir

log = logging.getLogger(__name__)

# Within the 5 s a supervisor gives a role after SIGTERM, with room to start the next one.
SHUTDOWN_S = 3.5


async def check_partitions(settings: Settings) -> None:
    """Raw and batched topics must partition alike, or a restarted worker would reload the wrong
    dedupe window (see ``processors.rebuild``)."""
    topics = settings.topics
    names = [topics.ticks_raw, topics.ticks, topics.bars_raw, topics.bars, topics.dlq]
    async with admin_client(settings) as admin:
        described = await admin.describe_topics(names)
    counts = {d["topic"]: len(d["partitions"]) for d in described if d["partitions"]}
    missing = [name for name in names if name not in counts]
    if missing:
        raise ConfigError(f"topics missing: {', '.join(missing)} (run `mdp topics` first)")
    if counts[topics.ticks_raw] != counts[topics.ticks]:
        raise ConfigError(
            f"{topics.ticks_raw} has {counts[topics.ticks_raw]} partitions but {topics.ticks} has "
            f"{counts[topics.ticks]}: they must have the same count"
        )


async def _check_unless_stopped(settings: Settings) -> bool:
    """Check the topics; return False when SIGTERM/SIGINT came first."""
    return await unless_stopped(check_partitions(settings), stop_on_signals())


class BoundedWorker(faust.Worker):
    """faust's worker with a time limit on stopping, and a way to stop because processing failed
    (with exit code 1), which the agents call."""

    def __init__(self, app: faust.App, in_hand: InHand, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.in_hand = in_hand
        self.exit_code = 0
        self._deadline: threading.Timer | None = None
        self._failing: asyncio.Future[None] | None = None

    def _on_sigterm(self) -> None:
        self._bound(0)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._bound(0)
        super()._on_sigint()

    def fail(self, exc: BaseException) -> None:
        """Stop because a buffer could not be processed or delivered (see ``processors.app``)."""
        if self._failing is not None:
            return
        log.critical("processing failed, its input is not committed; exiting: %s: %s",
                     type(exc).__name__, exc)  # fmt: skip
        self.exit_code = 1
        self._bound(1)
        self._failing = asyncio.ensure_future(self._stop_after_failure())

    async def _stop_after_failure(self) -> None:
        await self.stop()
        if self._starting_fut is not None:
            self._starting_fut.cancel()

    def _bound(self, code: int) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(SHUTDOWN_S, _exit_now, (code, self.in_hand))
            self._deadline.daemon = True
            self._deadline.start()


def _exit_now(code: int, in_hand: InHand) -> None:
    log.warning(
        "the worker did not stop within %.1f s (is the broker reachable?): exiting; %d raw "
        "messages in hand were not committed, the next worker processes them again",
        SHUTDOWN_S, in_hand.messages,
    )  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_worker(settings: Settings) -> None:
    if not asyncio.run(_check_unless_stopped(settings)):
        return
    worker: BoundedWorker | None = None

    def on_failure(exc: BaseException) -> None:
        if worker is not None:
            worker.fail(exc)

    in_hand = InHand()
    faust_datadir(settings).mkdir(parents=True, exist_ok=True)  # faust makes only the last part
    app = create_app(settings, on_failure=on_failure, in_hand=in_hand)
    worker = BoundedWorker(app, in_hand, loglevel=settings.log_level, quiet=True,
                           redirect_stdouts=False)  # fmt: skip
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if worker.exit_code:
            raise SystemExit(worker.exit_code) from None
        raise done from None
