from __future__ import annotations

from aiokafka import ConsumerRecord

from marketdata.codec import BarBatch, Batch, TickBatch, decode, encode_bars, encode_ticks
from marketdata.topics import Topics
from processors.core import BatchProcessor
from tests.strategies import sample_bar, sample_tick


def _message(value: bytes, partition: int = 0, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="md.ticks.raw", partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=b"k", value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip


def _processor(max_records: int = 500) -> BatchProcessor:
    return BatchProcessor(Topics(), max_records=max_records, window_keys=1000, window_s=600)


def test_ticks_are_deduplicated_and_regrouped_per_instrument_in_order() -> None:
    btc = [sample_tick(trade_id=str(n)) for n in range(3)]
    eth = [sample_tick(symbol="ETHUSDT", trade_id=str(n)) for n in range(2)]
    processor = _processor()
    result = processor.process(
        [_message(encode_ticks(btc[:2])), _message(encode_ticks(eth)),
         _message(encode_ticks([btc[1], btc[2]]))]
    )  # fmt: skip
    assert result.records_in == 6
    assert result.duplicates == 1
    assert result.ticks_out == 5
    assert [(o.topic, o.key) for o in result.outputs] == [
        ("md.ticks", b"BINANCE:BTCUSDT"), ("md.ticks", b"BINANCE:ETHUSDT")
    ]  # fmt: skip
    first = decode(result.outputs[0].value)
    assert isinstance(first, TickBatch)
    assert first.records == btc
    again = processor.process([_message(encode_ticks(btc))])
    assert again.outputs == []
    assert again.duplicates == 3


def test_batches_are_split_at_max_records() -> None:
    ticks = [sample_tick(trade_id=str(n)) for n in range(7)]
    result = _processor(max_records=3).process([_message(encode_ticks(ticks))])
    sizes = [len(decode(o.value).records) for o in result.outputs]
    assert sizes == [3, 3, 1]


def test_windows_are_per_input_partition_and_can_be_forgotten() -> None:
    tick = sample_tick()
    processor = _processor()
    processor.process([_message(encode_ticks([tick]), partition=0)])
    assert processor.process([_message(encode_ticks([tick]), partition=1)]).ticks_out == 1
    processor.forget([0])
    assert processor.process([_message(encode_ticks([tick]), partition=0)]).ticks_out == 1


def test_bar_versions_collapse_and_bad_messages_are_dead_letters() -> None:
    live, closed = sample_bar(closed=False), sample_bar(closed=True)
    bad = _message(b"nope", offset=9)
    result = _processor().process([_message(encode_bars([live])), bad,
                                   _message(encode_bars([closed]))])  # fmt: skip
    (output,) = result.outputs
    batch = decode(output.value)
    assert isinstance(batch, BarBatch)
    assert batch.records == [closed]
    assert result.duplicates == 1
    ((message, reason),) = result.dead
    assert message is bad
    assert "malformed JSON" in reason


def test_a_message_whose_processing_raises_anything_is_a_dead_letter_with_the_reason() -> None:
    # Whatever the decoder lets through (a RecursionError from a deep message, a bug), the one
    # message goes to the dead letters and the rest of the buffer is processed.
    poison = b"[" * 5000 + b"]" * 5000

    def fragile(value: bytes | None) -> Batch:
        if value == poison:
            raise RecursionError("maximum recursion depth exceeded")
        return decode(value)

    tick = sample_tick()
    processor = BatchProcessor(Topics(), max_records=500, window_keys=1000, window_s=600,
                               decode=fragile)  # fmt: skip
    bad = _message(poison, offset=1)
    result = processor.process([bad, _message(encode_ticks([tick]), offset=2)])
    ((message, reason),) = result.dead
    assert message is bad
    assert reason == "could not process: RecursionError: maximum recursion depth exceeded"
    (output,) = result.outputs
    assert decode(output.value).records == [tick]


def test_a_reason_quoting_a_huge_exception_is_cut_to_a_readable_header() -> None:
    def huge(_: bytes | None) -> Batch:
        raise ValueError("9" * 100_000)

    processor = BatchProcessor(Topics(), max_records=500, window_keys=1000, window_s=600,
                               decode=huge)  # fmt: skip
    ((_, reason),) = processor.process([_message(b"x")]).dead
    assert reason.startswith("could not process: ValueError: 999")
    assert len(reason) == 501


def test_a_message_mixing_instruments_is_regrouped_per_instrument_in_order() -> None:
    btc = [sample_tick(trade_id=str(n)) for n in range(3)]
    eth = [sample_tick(symbol="ETHUSDT", trade_id=str(n)) for n in range(2)]
    other = sample_tick(exchange="COINBASE", trade_id="0")
    mixed = [btc[0], eth[0], btc[1], other, eth[1], btc[2]]
    result = _processor().process([_message(encode_ticks(btc[:1])), _message(encode_ticks(mixed))])
    assert result.duplicates == 1
    groups = {o.key: decode(o.value).records for o in result.outputs}
    assert groups == {
        b"BINANCE:BTCUSDT": btc,
        b"BINANCE:ETHUSDT": eth,
        b"COINBASE:BTCUSDT": [other],
    }
    assert [o.key for o in result.outputs] == [
        b"BINANCE:BTCUSDT", b"BINANCE:ETHUSDT", b"COINBASE:BTCUSDT"
    ]  # fmt: skip
