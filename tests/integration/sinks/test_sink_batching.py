"""Adaptive batching against a real broker and a real PostgreSQL server: a batch is written as
soon as the input runs dry, and grows only under load (while the batch before it is written).

The time cap is set far above every wait here, so that a sink that waits for it fails these
tests rather than passing them slowly.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from marketdata.settings import Settings
from sinks.writer import Tables
from tests.integration.polling import wait_until
from tests.integration.sinks.support import (
    count_rows,
    make_ticks,
    metric,
    publish,
    running_sink,
    strict_tables,
    tick_messages,
    wait_for_rows,
)

# Far above every wait below: reaching it would fail the test.
TIME_CAP_MS = 60_000


@pytest.fixture
def capped(sink_settings: Settings) -> Settings:
    return sink_settings.model_copy(update={"sink_batch_ms": TIME_CAP_MS})


@pytest.fixture
def tables(sink_settings: Settings, unique: str) -> Iterator[Tables]:
    """Tables of this test's own (another session may lock them), dropped at the end."""
    made = strict_tables(sink_settings.database, unique)
    yield made
    with psycopg.connect(sink_settings.database, autocommit=True) as conn:
        for table in (made.ticks, made.bars):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


async def test_a_lone_message_is_written_at_once_not_when_the_time_cap_is_reached(
    capped: Settings,
) -> None:
    first, second = make_ticks(2)
    async with running_sink(capped) as sink:
        await publish(capped, capped.topics.ticks, tick_messages([first], 1))
        # The first may wait for the consumer group to form (seconds), never for the time cap.
        assert await wait_for_rows(capped, 1, within=30) == 1
        await publish(capped, capped.topics.ticks, tick_messages([second], 1))
        assert await wait_for_rows(capped, 2, within=30) == 2
        # Counted once the offsets are committed too, just after the rows are visible.
        await wait_until(lambda: metric(sink, "mdp_sink_batches_total") == 2)
        assert metric(sink, "mdp_sink_batch_reasons_total", reason="dry") == 2
        assert metric(sink, "mdp_sink_batch_reasons_total", reason="age") == 0


async def test_messages_that_arrive_while_a_batch_is_written_make_the_next_batch_together(
    capped: Settings, tables: Tables
) -> None:
    ticks = make_ticks(51)
    blocker = psycopg.connect(capped.database)
    try:
        # The sink's first write waits for this lock: a database slower than the input.
        blocker.execute(
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(tables.ticks))
        )
        async with running_sink(capped, tables) as sink:
            await publish(capped, capped.topics.ticks, tick_messages(ticks[:1], 1))
            await wait_until(
                lambda: metric(sink, "mdp_sink_batch_reasons_total", reason="dry") == 1
            )
            await publish(capped, capped.topics.ticks, tick_messages(ticks[1:], 1))
            # Consumed while the first batch is still being written.
            await wait_until(lambda: metric(sink, "mdp_sink_messages_total") == 51)
            assert count_rows(capped, tables.ticks) == 0
            blocker.rollback()
            assert await wait_for_rows(capped, 51, tables.ticks, within=30) == 51
            await wait_until(lambda: metric(sink, "mdp_sink_batches_total") == 2)
            assert metric(sink, "mdp_sink_batch_rows_sum") == 51
            assert metric(sink, "mdp_sink_batch_rows_bucket", le="1.0") == 1  # the lone first
            assert metric(sink, "mdp_sink_batch_reasons_total", reason="age") == 0
    finally:
        blocker.close()


async def test_a_backlog_is_written_in_batches_of_the_size_cap_not_message_by_message(
    capped: Settings,
) -> None:
    ticks = make_ticks(20_000)
    messages = tick_messages(ticks, per_message=10)
    await publish(capped, capped.topics.ticks, messages)
    async with running_sink(capped) as sink:  # batches of at most 2,000 rows
        assert await wait_for_rows(capped, 20_000, within=60) == 20_000
        await wait_until(lambda: metric(sink, "mdp_sink_batch_rows_sum") == 20_000)
        batches = metric(sink, "mdp_sink_batches_total")
        full = metric(sink, "mdp_sink_batch_reasons_total", reason="size")
    # 2,000 messages in about 10 transactions: the batches are full, not one a message.
    assert 10 <= batches <= 20
    assert full >= batches / 2
    assert metric(sink, "mdp_sink_batch_reasons_total", reason="age") == 0
