from __future__ import annotations

import asyncio

import pytest

from marketdata.errors import TransientError
from marketdata.settings import Settings
from sinks import service
from sinks.service import Sink


class FailingSteps(Sink):
    """A sink whose steps fail as a fetch from a broker that is away would, then stop."""

    def __init__(self, failures: list[Exception], stop: asyncio.Event) -> None:
        super().__init__(Settings.from_env({}))
        self.failures = failures
        self.stop = stop
        self.steps = 0

    async def step(self) -> None:
        self.steps += 1
        if self.failures:
            raise self.failures.pop(0)
        self.stop.set()


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(service, "STEP_PAUSE_S", 0.01)
    stop = asyncio.Event()
    sink = FailingSteps(
        [TransientError("Kafka unavailable: fetch failed"), RuntimeError("unexpected")], stop
    )
    await asyncio.wait_for(sink.run(stop), 5)
    assert sink.steps == 3
    assert "consuming failed (Kafka unavailable: fetch failed); going on" in caplog.text
    assert "consuming failed (RuntimeError: unexpected)" in caplog.text


async def test_a_step_that_hangs_is_cancelled_when_stop_is_set() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    class Hanging(Sink):
        async def step(self) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    sink = Hanging(Settings.from_env({}))
    asyncio.get_running_loop().call_later(0.1, stop.set)
    await asyncio.wait_for(sink.run(stop), 5)
    assert cancelled.is_set()
