from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from marketdata.codec import encode_bars, encode_ticks
from sinks.accumulator import Accumulator
from tests.clock import Clock
from tests.strategies import sample_bar, sample_tick

TP0 = TopicPartition("md.ticks", 0)
TP1 = TopicPartition("md.ticks", 1)


def _message(offset: int, value: bytes, partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="md.ticks", partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=b"BINANCE:BTCUSDT", value=value, checksum=None, serialized_key_size=15,
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip


def test_rows_are_decoded_and_counted_per_record_not_per_message() -> None:
    acc = Accumulator(max_rows=10, max_age_s=1.0, clock=Clock(100.0))
    ticks = [sample_tick(trade_id=str(n)) for n in range(4)]
    acc.add(TP0, [_message(7, encode_ticks(ticks)), _message(8, encode_bars([sample_bar()]))])
    assert acc.rows == 5
    pending = acc.take()
    assert pending.ticks() == ticks
    assert pending.bars() == [sample_bar()]
    assert pending.offsets() == {TP0: 9}
    assert acc.rows == 0
    assert acc.seconds_until_due() is None


def test_due_as_soon_as_the_input_runs_dry() -> None:
    acc = Accumulator(max_rows=3, max_age_s=10.0, clock=Clock(100.0))
    assert acc.due(dry=True) is None  # nothing to write
    acc.add(TP0, [_message(0, encode_ticks([sample_tick()]))])
    assert acc.due(dry=False) is None  # more is coming: keep gathering
    assert acc.due(dry=True) == "dry"  # long before the time cap
    acc.take()
    acc.add(TP0, [_message(1, b"{not json")])  # a dead letter alone is written at once too
    assert acc.due(dry=True) == "dry"


def test_due_by_row_count_or_by_age_of_the_oldest_row_while_the_input_keeps_coming() -> None:
    clock = Clock(100.0)
    acc = Accumulator(max_rows=3, max_age_s=0.25, clock=clock)
    acc.add(TP0, [_message(0, encode_ticks([sample_tick()]))])
    assert acc.due(dry=False) is None
    assert acc.seconds_until_due() == 0.25
    clock.now += 0.1
    acc.add(TP1, [_message(0, encode_ticks([sample_tick(trade_id="x")]), partition=1)])
    assert acc.seconds_until_due() == pytest.approx(0.15)  # the oldest row sets the deadline
    clock.now += 0.15
    assert acc.due(dry=False) == "age"
    fresh = Accumulator(max_rows=3, max_age_s=60, clock=clock)
    fresh.add(TP0, [_message(n, encode_ticks([sample_tick(trade_id=str(n))])) for n in range(3)])
    assert fresh.due(dry=False) == "size"
    assert fresh.due(dry=True) == "size"  # the cap says it first


def test_room_left_before_the_size_cap() -> None:
    acc = Accumulator(max_rows=5, max_age_s=1.0, clock=Clock(100.0))
    assert acc.empty
    assert acc.room == 5
    acc.add(TP0, [_message(0, encode_ticks([sample_tick(trade_id=str(n)) for n in range(3)]))])
    assert not acc.empty
    assert acc.room == 2
    acc.add(TP0, [_message(1, encode_ticks([sample_tick(trade_id=str(n)) for n in range(3, 7)]))])
    assert acc.room == 0  # a message over the cap is kept whole, never split
    assert acc.rows == 7
    acc.take()
    assert acc.empty
    assert acc.room == 5


def test_undecodable_messages_are_kept_with_their_reason_and_still_advance_the_offset() -> None:
    acc = Accumulator(max_rows=10, max_age_s=1.0, clock=Clock(100.0))
    bad = _message(3, b"{not json")
    acc.add(TP0, [_message(2, encode_ticks([sample_tick()])), bad])
    pending = acc.take()
    ((message, reason),) = pending.dead()
    assert message is bad
    assert "malformed JSON" in reason
    assert pending.offsets() == {TP0: 4}


def test_revoked_partitions_are_forgotten() -> None:
    acc = Accumulator(max_rows=100, max_age_s=1.0, clock=Clock(100.0))
    acc.add(TP0, [_message(0, encode_ticks([sample_tick()]))])
    acc.add(TP1, [_message(0, encode_ticks([sample_tick(), sample_tick(trade_id="2")]), 1)])
    assert acc.discard({TP1}) == 2
    assert acc.rows == 1
    pending = acc.take()
    assert set(pending.offsets()) == {TP0}
    pending.drop({TP0})
    assert pending.size == 0


def test_each_record_knows_its_message_and_its_place_in_it() -> None:
    acc = Accumulator(max_rows=100, max_age_s=1.0, clock=Clock(100.0))
    first = _message(4, encode_ticks([sample_tick(trade_id="a"), sample_tick(trade_id="b")]))
    bar = _message(5, encode_bars([sample_bar()]))
    second = _message(6, encode_ticks([sample_tick(trade_id="c")]))
    acc.add(TP0, [first, bar, second])
    acc.add(TP1, [_message(0, encode_ticks([sample_tick(trade_id="d")]), partition=1)])
    pending = acc.take()
    origins = pending.tick_origins()
    assert [t.trade_id for t in pending.ticks()] == ["a", "b", "c", "d"]
    assert [(o.message.partition, o.message.offset, o.index, o.count) for o in origins] == [
        (0, 4, 0, 2), (0, 4, 1, 2), (0, 6, 0, 1), (1, 0, 0, 1),
    ]  # fmt: skip
    assert [(o.message.offset, o.index, o.count) for o in pending.bar_origins()] == [(5, 0, 1)]


def test_a_decoder_that_fails_unexpectedly_makes_a_dead_letter_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(data: bytes | None) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("sinks.accumulator.decode", explode)
    acc = Accumulator(max_rows=10, max_age_s=1.0, clock=Clock(100.0))
    acc.add(TP0, [_message(0, b"[" * 5000)])
    ((message, reason),) = acc.take().dead()
    assert message.offset == 0
    assert reason == "decoder failed: RecursionError: maximum recursion depth exceeded"


@pytest.mark.parametrize(
    "value", [b"[" * 5000 + b"]" * 5000, b'{"kind":"ticks","v":1,"records":' + b"[" * 100_000]
)
def test_deeply_nested_messages_are_dead_letters_and_the_next_message_is_kept(value: bytes) -> None:
    acc = Accumulator(max_rows=10, max_age_s=1.0, clock=Clock(100.0))
    acc.add(TP0, [_message(0, value), _message(1, encode_ticks([sample_tick()]))])
    pending = acc.take()
    assert [message.offset for message, _ in pending.dead()] == [0]
    assert pending.ticks() == [sample_tick()]
    assert pending.offsets() == {TP0: 2}
