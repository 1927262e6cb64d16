"""Waiting in tests for something that has no event to await: a count, a metric, a status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(
    condition: Callable[[], bool], within: float = 30.0, step: float = 0.1
) -> None:
    """Poll ``condition`` until it holds; fail the test (TimeoutError) after ``within``."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the condition is a value, not an event
            await asyncio.sleep(step)
