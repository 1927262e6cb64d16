from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from psycopg import errors

from marketdata.codec import decode, encode_bars, encode_ticks
from marketdata.records import Bar, Tick
from sinks.accumulator import Accumulator
from sinks.isolate import Isolation, dead_letter
from sinks.writer import WriteResult
from tests.clock import Clock
from tests.strategies import sample_bar, sample_tick

TP = TopicPartition("md.ticks", 0)


def _message(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="md.ticks", partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"BINANCE:BTCUSDT", value=value, checksum=None, serialized_key_size=15,
        serialized_value_size=len(value), headers=[("trace", b"abc")],
    )  # fmt: skip


class FakeDatabase:
    """Stores every write in which no record is poison; a write holding one fails whole, as a
    transaction does. ``transient`` failures are raised first, once each."""

    def __init__(self, poison: set[str], transient: list[Exception] | None = None) -> None:
        self.poison = poison
        self.transient = transient or []
        self.ticks: list[Tick] = []
        self.bars: list[Bar] = []
        self.writes = 0

    async def write(self, ticks: Sequence[Tick], bars: Sequence[Bar]) -> WriteResult:
        self.writes += 1
        if self.transient:
            raise self.transient.pop(0)
        bad = [t.trade_id for t in ticks if t.trade_id in self.poison]
        bad += [b.symbol for b in bars if b.symbol in self.poison]
        if bad:
            raise errors.StringDataRightTruncation(f"value too long: {bad[0]}")
        self.ticks += ticks
        self.bars += bars
        return WriteResult(len(ticks), len(ticks), len(bars), len(bars))


def _pending(ticks_per_message: int, messages: int, bars: list[Bar]) -> Accumulator:
    acc = Accumulator(max_rows=100_000, max_age_s=1.0, clock=Clock(0.0))
    n = 0
    batch = []
    for offset in range(messages):
        chunk = [sample_tick(trade_id=str(n + i)) for i in range(ticks_per_message)]
        n += ticks_per_message
        batch.append(_message(offset, encode_ticks(chunk)))
    batch += [_message(messages + i, encode_bars([bar])) for i, bar in enumerate(bars)]
    acc.add(TP, batch)
    return acc


async def test_the_good_rows_are_stored_and_each_bad_one_isolated_with_its_reason() -> None:
    bars = [sample_bar(timestamp=sample_bar().timestamp + timedelta(minutes=m)) for m in range(5)]
    bad_bar = sample_bar(symbol="POISON")
    pending = _pending(10, 100, [*bars, bad_bar]).take()
    db = FakeDatabase(poison={"17", "500", "999", "POISON"})
    isolation = Isolation(pending)
    await isolation.run(db.write)
    assert isolation.done
    assert sorted(int(t.trade_id) for t in db.ticks) == sorted(set(range(1000)) - {17, 500, 999})
    assert db.bars == bars
    rejected = {
        (r.record.trade_id if isinstance(r.record, Tick) else r.record.symbol): r
        for r in isolation.rejected
    }
    assert set(rejected) == {"17", "500", "999", "POISON"}
    assert rejected["500"].reason == "[22001] value too long: 500"
    assert (rejected["500"].origin.message.offset, rejected["500"].origin.index) == (50, 0)
    assert (rejected["17"].origin.message.offset, rejected["17"].origin.index) == (1, 7)
    assert isolation.result == WriteResult(997, 997, 5, 5)
    # Bisection, not one write a record: about 2·log2(1000) writes for each bad tick.
    assert db.writes < 4 * 2 * 10 + 2 * 2 * 3


async def test_a_transient_failure_stops_the_bisection_which_resumes_where_it_was() -> None:
    pending = _pending(1, 64, []).take()
    db = FakeDatabase(poison={"5"})
    isolation = Isolation(pending)
    db.transient = [errors.ConnectionException("gone")]
    with pytest.raises(errors.ConnectionException):
        await isolation.run(db.write)
    assert not isolation.done
    db.transient = [errors.DeadlockDetected("deadlock detected")]
    with pytest.raises(errors.DeadlockDetected):
        await isolation.run(db.write)
    await isolation.run(db.write)
    assert isolation.done
    assert sorted(int(t.trade_id) for t in db.ticks) == [n for n in range(64) if n != 5]
    assert len(db.ticks) == 63  # nothing stored twice by the resumption
    assert [r.record.trade_id for r in isolation.rejected if isinstance(r.record, Tick)] == ["5"]


async def test_a_message_holding_only_the_bad_record_is_dead_lettered_unchanged() -> None:
    acc = _pending(1, 3, [])
    pending = acc.take()
    isolation = Isolation(pending)
    await isolation.run(FakeDatabase(poison={"1"}).write)
    ((rejected,),) = [isolation.rejected]
    message, reason = dead_letter(rejected)
    assert message is rejected.origin.message
    assert message.offset == 1
    assert reason == "[22001] value too long: 1"


async def test_a_bad_record_among_good_ones_is_dead_lettered_alone_with_its_message_origin() -> (
    None
):
    pending = _pending(4, 3, []).take()
    isolation = Isolation(pending)
    await isolation.run(FakeDatabase(poison={"6"}).write)
    ((rejected,),) = [isolation.rejected]
    letter, reason = dead_letter(rejected)
    source = rejected.origin.message
    assert (letter.topic, letter.partition, letter.offset) == ("md.ticks", 0, 1)
    assert letter.key == source.key
    assert letter.headers == source.headers
    assert decode(letter.value).records == [sample_tick(trade_id="6")]
    assert reason == (
        "[22001] value too long: 6 (record 3 of the 4 in the message, re-encoded alone)"
    )


async def test_a_rejected_bar_batch_keeps_the_later_version_of_a_bar_last() -> None:
    early = sample_bar(closed=False, close=sample_bar().close - 1)
    late = sample_bar()
    pending = _pending(0, 0, [early, sample_bar(symbol="POISON"), late]).take()
    db = FakeDatabase(poison={"POISON"})
    await Isolation(pending).run(db.write)
    assert db.bars == [early, late]


async def test_nothing_to_isolate_when_every_row_is_bad() -> None:
    pending = _pending(1, 4, []).take()
    isolation = Isolation(pending)
    db = FakeDatabase(poison={"0", "1", "2", "3"})
    await isolation.run(db.write)
    assert db.ticks == []
    assert len(isolation.rejected) == 4
    assert isolation.result == WriteResult(0, 0, 0, 0)
