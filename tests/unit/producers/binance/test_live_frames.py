"""The live producer's frame handling is total: whatever text a connection delivers becomes
records or a dead letter, and the stream goes on (no exception leaves ``_handle``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.records import Bar, Tick
from producers.binance.live import BinanceLive, FirstSeen
from producers.publisher import Publisher
from tests.unit.producers.binance.mutations import FIXTURES, RECEIVED, deep


class Collected:
    """What the producer hands its publisher, kept in memory."""

    def __init__(self) -> None:
        self.records: list[Tick | Bar] = []
        self.dead_letters: list[tuple[bytes, str, str]] = []
        self.last_flush = 0.0

    async def add(self, records: Iterable[Tick | Bar]) -> None:
        self.records.extend(records)

    async def dead(self, raw: bytes, reason: str, origin: str) -> None:
        self.dead_letters.append((raw, reason, origin))

    async def dead_rows(self, rejected: Iterable[tuple[Any, str]], origin: str) -> None:
        self.dead_letters.extend((repr(row).encode(), reason, origin) for row, reason in rejected)

    async def flush(self, *, wait: bool = False) -> None:
        self.last_flush = time.monotonic()


def producer() -> tuple[BinanceLive, Collected]:
    collected = Collected()
    live = BinanceLive("ws://127.0.0.1:9", cast(Any, None), ["btcusdt@trade"],
                       cast(Publisher, collected))  # fmt: skip
    return live, collected


FRAMES = [(FIXTURES / name).read_text().strip()
          for name in ("trade.json", "aggTrade.json", "kline.json", "bookTicker.json")]  # fmt: skip

frames = (
    st.text(max_size=200)
    | st.sampled_from(FRAMES).flatmap(
        lambda frame: st.integers(0, len(frame)).map(lambda cut: frame[:cut])
    )
    | st.sampled_from(FRAMES).flatmap(
        lambda frame: st.tuples(st.integers(0, len(frame) - 1), st.text(min_size=1, max_size=3))
        .map(lambda edit: frame[: edit[0]] + edit[1] + frame[edit[0] + 1 :])
    )
    | st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth)
    | st.just('{"e":"trade","T":' + "9" * 5000 + "}")
    | st.just(json.dumps({"data": deep(50)}))
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(frames)
async def test_any_frame_gives_records_or_a_dead_letter(frame: str) -> None:
    live, collected = producer()
    await live._handle(RECEIVED, frame)
    assert live.stats.messages == 1
    handled = len(collected.dead_letters) + live.stats.records
    assert handled >= 1 or frame.strip().startswith('{"result"') or "serverShutdown" in frame
    for raw, reason, origin in collected.dead_letters:
        assert (raw, origin) == (frame.encode(errors="replace"), "binance.ws")
        assert reason


async def test_a_frame_nested_deeper_than_the_parser_goes_is_a_dead_letter() -> None:
    live, collected = producer()
    await live._handle(RECEIVED, "[" * 200_000 + "]" * 200_000)
    await live._handle(RECEIVED, FRAMES[0])
    assert [reason for _, reason, _ in collected.dead_letters] == [
        "malformed Binance message: maximum recursion depth exceeded while deserializing an object"
    ]
    assert [r.source for r in collected.records] == ["binance.trade"]


def test_first_seen_stamps_every_copy_of_an_update_with_its_first_arrival() -> None:
    clock = FirstSeen(size=3)
    later = RECEIVED + timedelta(seconds=1)
    assert clock("BNBUSDT", 7, RECEIVED) == RECEIVED
    assert clock("BNBUSDT", 7, later) == RECEIVED
    assert clock("ETHUSDT", 7, later) == later  # an update id is the symbol's own
    clock("BNBUSDT", 8, later)
    clock("BNBUSDT", 9, later)  # the oldest is forgotten past ``size``
    assert clock("BNBUSDT", 7, datetime(2030, 1, 1, tzinfo=UTC)) == datetime(2030, 1, 1, tzinfo=UTC)


async def test_a_microsecond_frame_gives_its_record() -> None:
    live, collected = producer()
    frame = json.loads(FRAMES[0])
    frame["data"] = {**frame["data"], "T": 1709294400120007, "E": 1709294400123007}
    await live._handle(RECEIVED, json.dumps(frame))
    assert collected.dead_letters == []
    [tick] = collected.records
    assert tick.timestamp == datetime(2024, 3, 1, 12, 0, 0, 120007, tzinfo=UTC)
