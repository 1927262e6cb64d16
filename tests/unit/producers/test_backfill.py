"""The one backfill loop, fed by a fake page source and publishing to a fake broker (no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer

from marketdata.codec import decode
from marketdata.dlq import HEADER_REASON
from marketdata.errors import MarketDataError
from marketdata.settings import Settings
from marketdata.topics import Topics
from producers.backfill import BackfillResult, Page, json_rows, publish_pages
from producers.publisher import Publisher
from tests.strategies import sample_bar, sample_tick

START = datetime(2024, 3, 1, tzinfo=UTC)
TOPICS = Topics("t.")


class Broker:
    """The producer's ``send``, answered at once, keeping what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Any = None
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, value, dict(headers or [])))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def bar_times(self, topics: tuple[str, ...] = (TOPICS.bars_raw,)) -> list[datetime]:
        return [record.timestamp for topic, value, _ in self.sent if topic in topics
                for record in decode(value).records]  # fmt: skip

    def letters(self) -> list[tuple[bytes, dict[str, bytes]]]:
        return [(value, headers) for topic, value, headers in self.sent if topic == TOPICS.dlq]


def bar(minute: int) -> Any:
    return sample_bar(timestamp=START + timedelta(minutes=minute))


async def run(
    broker: Broker, pages: list[Page], *, progress: list[tuple[int, int]] | None = None,
    expected: int = 0, asked: BackfillResult | None = None,
) -> BackfillResult:  # fmt: skip
    @asynccontextmanager
    async def opener() -> AsyncIterator[Publisher]:
        yield Publisher(cast(AIOKafkaProducer, broker), TOPICS, stage="test.backfill",
                        max_records=500)  # fmt: skip

    async def source() -> AsyncIterator[Page]:
        for page in pages:
            yield page
            # The loop asks for the next page only once this one is sent.
            sent = broker.bar_times((TOPICS.bars_raw, TOPICS.ticks_raw))
            assert set(sent) >= {record.timestamp for record in page.records}

    return await publish_pages(
        Settings.from_env({}), asked or BackfillResult("BTCUSDT", "1m", START, None), source(),
        stage="test.backfill", origin="venue.rest", opener=opener,
        gauge=lambda so_far: (so_far.records, max(expected, so_far.records)),
        progress=None if progress is None else lambda done, total: progress.append((done, total)),
    )  # fmt: skip


async def test_pages_are_published_in_order_and_counted() -> None:
    broker, seen = Broker(), list[tuple[int, int]]()
    pages = [Page([bar(2), bar(3)]), Page([]), Page([bar(0), bar(1)])]  # IB: newest first
    result = await run(broker, pages, progress=seen, expected=4)
    assert broker.bar_times() == [START + timedelta(minutes=m) for m in (2, 3, 0, 1)]
    assert (result.records, result.rejected, result.pages, result.requests) == (4, 0, 3, 3)
    assert (result.first, result.last) == (START, START + timedelta(minutes=3))
    assert seen == [(2, 4), (2, 4), (4, 4)]


async def test_rejects_are_dead_lettered_as_they_came_with_their_reason() -> None:
    broker = Broker()
    rows = json_rows([([1709251200000, "x"], "open: not a decimal")])
    result = await run(broker, [Page([bar(0)], [(b"\xee\xee", "garbage"), *rows])])
    assert (result.records, result.rejected) == (1, 2)
    letters = broker.letters()
    assert [value for value, _ in letters] == [b"\xee\xee", b'[1709251200000, "x"]']
    assert [h[HEADER_REASON] for _, h in letters] == [b"garbage", b"open: not a decimal"]
    assert {h["mdp.origin"] for _, h in letters} == {b"venue.rest"}


async def test_a_range_that_ends_in_a_gap_still_ends_the_bar_at_its_total() -> None:
    seen: list[tuple[int, int]] = []
    await run(Broker(), [Page([bar(0)]), Page([bar(1)])], progress=seen, expected=5)
    assert seen == [(1, 5), (2, 5), (5, 5)]


async def test_an_empty_history_publishes_nothing_and_says_so() -> None:
    broker = Broker()
    result = await run(broker, [])
    assert (result.records, result.pages, result.first, result.last) == (0, 0, None, None)
    assert broker.sent == []


async def test_a_source_that_fails_keeps_what_it_delivered_and_raises() -> None:
    broker = Broker()

    async def failing() -> AsyncIterator[Page]:
        yield Page([bar(0)])
        raise MarketDataError("venue: gone")

    @asynccontextmanager
    async def opener() -> AsyncIterator[Publisher]:
        yield Publisher(cast(AIOKafkaProducer, broker), TOPICS, stage="s")

    with pytest.raises(MarketDataError, match="venue: gone"):
        await publish_pages(
            Settings.from_env({}), BackfillResult("X", "1m", START, None), failing(), stage="s",
            origin="o", opener=opener, gauge=lambda r: (r.records, r.records),
        )  # fmt: skip
    assert broker.bar_times() == [START]


def test_the_summary_of_a_forward_range_of_bars() -> None:
    result = replace(BackfillResult("BTCUSDT", "1h", START, None), records=48, requests=1)
    assert result.summary(TOPICS) == (
        "48 bars of BTCUSDT 1h from 2024-03-01 00:00 published to t.md.bars.raw in 1 request"
    )


def test_the_summary_of_a_backward_range_with_rejects_and_waits() -> None:
    end = START + timedelta(days=14, seconds=30)
    result = replace(BackfillResult("AAPL", "5m", START, end, backwards=True), records=4032,
                     requests=2, rejected=3, waited_s=12.4)  # fmt: skip
    assert result.summary(TOPICS) == (
        "4032 bars of AAPL 5m before 2024-03-15 00:00:30 published to t.md.bars.raw in 2"
        " requests; 3 malformed records dead-lettered; waited 12s for the venue's rate limits"
    )


def test_the_summary_of_trades_names_the_ticks_topic() -> None:
    result = replace(BackfillResult("ESZ4@CME", "tick", START, None), records=7, requests=3)
    assert result.summary(TOPICS).startswith(
        "7 trades of ESZ4@CME tick from 2024-03-01 00:00 published to t.md.ticks.raw in 3 requests"
    )


async def test_ticks_and_bars_of_one_page_go_to_their_own_topics() -> None:
    broker = Broker()
    await run(broker, [Page([sample_tick(), bar(0)])])
    assert sorted(topic for topic, _, _ in broker.sent) == [TOPICS.bars_raw, TOPICS.ticks_raw]
    assert json.loads(json_rows([({"a": 1}, "r")])[0][0]) == {"a": 1}
