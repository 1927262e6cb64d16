from __future__ import annotations

import asyncio

import pytest

from marketdata.stopping import cancel, finish_within


async def test_a_result_in_time_is_returned() -> None:
    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert await finish_within(quick(), 1.0) == (True, 7)


async def test_an_error_in_time_is_raised() -> None:
    async def failing() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await finish_within(failing(), 1.0)


async def test_an_operation_that_answers_the_first_cancellation_by_waiting_is_cancelled_again() -> (
    None
):
    ended = asyncio.Event()

    async def stubborn() -> None:
        # As psycopg does: a cancellation starts a cancel request that may wait a long time.
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            try:
                await asyncio.sleep(60)
            finally:
                ended.set()

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await finish_within(stubborn(), 0.1) == (False, None)
    assert ended.is_set()
    assert loop.time() - started < 1.0


async def test_cancel_ends_a_task_and_ignores_what_it_raises_on_the_way_out() -> None:
    async def raising_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed") from None

    task = asyncio.ensure_future(raising_on_cancel())
    await asyncio.sleep(0)
    await cancel(task)
    assert task.done()
