"""The processor's derived-bars wiring (processors/derive.py), without a broker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from marketdata.codec import BarBatch, decode, encode_bars, encode_ticks
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from processors.core import BatchProcessor
from processors.derive import DerivedBars, NoBars, derived_bars
from tests.strategies import sample_bar, sample_tick


def _message(value: bytes, topic: str = "md.ticks.raw", partition: int = 0,
             key: bytes = b"BINANCE:BTCUSDT") -> ConsumerRecord[bytes, bytes]:  # fmt: skip
    return ConsumerRecord(
        topic=topic, partition=partition, offset=0, timestamp=0, timestamp_type=0, key=key,
        value=value, checksum=None, serialized_key_size=len(key),
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip


def _wired() -> tuple[DerivedBars, BatchProcessor, CollectorRegistry]:
    settings = Settings.from_env({"MDP_BARS_ENABLED": "true", "MDP_BARS_INTERVALS": "1m"})
    registry = CollectorRegistry()
    bars = derived_bars(settings, registry)
    assert isinstance(bars, DerivedBars)
    bars.loaded.update({0, 1})  # as if rebuilt: no broker here
    processor = BatchProcessor(settings.topics, max_records=500, window_keys=100, window_s=60,
                               decode=bars.decode)  # fmt: skip
    return bars, processor, registry


async def test_a_round_emits_each_changed_bar_once_to_the_raw_bars_topic() -> None:
    bars, processor, registry = _wired()
    t0 = sample_tick().timestamp
    ticks = [sample_tick(trade_id=str(n), timestamp=t0 + timedelta(seconds=n),
                         price=Decimal(100 + n)) for n in range(5)]  # fmt: skip
    quote = sample_tick(trade_id="q", side="bid", price=Decimal(1))
    result = await bars.process(processor, [
        _message(encode_ticks(ticks[:3])), _message(encode_ticks([*ticks[2:], quote])),
        _message(encode_bars([sample_bar()]), topic="md.bars.raw"),
    ])  # fmt: skip
    derived = [o for o in result.outputs if o.topic == "md.bars.raw"]
    assert [o.key for o in derived] == [b"BINANCE:BTCUSDT"]
    batch = decode(derived[0].value)
    assert isinstance(batch, BarBatch)
    [bar] = batch.records
    assert (bar.open, bar.high, bar.low, bar.close, bar.trade_count, bar.closed, bar.source) == (
        Decimal(100), Decimal(104), Decimal(100), Decimal(104), 5, False, "derived.trades"
    )  # fmt: skip
    # The duplicate tick is dropped from md.ticks as before, and counted once in the bar.
    assert result.duplicates == 1
    assert registry.get_sample_value("mdp_bars_trades_total") == 6.0  # quotes are not trades
    assert registry.get_sample_value("mdp_bars_emitted_total", {"closed": "false"}) == 1.0

    again = await bars.process(processor, [_message(encode_ticks(ticks[:2]))])
    assert [o for o in again.outputs if o.topic == "md.bars.raw"] == []  # nothing changed


async def test_a_revoked_partition_forgets_its_instruments_and_must_be_rebuilt() -> None:
    bars, processor, _ = _wired()
    await bars.process(processor, [
        _message(encode_ticks([sample_tick()]), partition=0),
        _message(encode_ticks([sample_tick(symbol="ETHUSDT")]), partition=1,
                 key=b"BINANCE:ETHUSDT"),
    ])  # fmt: skip
    bars.forget([1])
    assert set(bars.builder.instruments) == {b"BINANCE:BTCUSDT"}
    assert bars.loaded == {0}


async def test_bars_are_on_by_default_for_the_venues_one_trade_source_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Live trades and aggTrades of one instrument: the default counts binance.trade only, and
    says once which source it leaves out."""
    registry = CollectorRegistry()
    settings = Settings.from_env({"MDP_BARS_INTERVALS": "1m"})
    bars = derived_bars(settings, registry)
    assert isinstance(bars, DerivedBars)
    bars.loaded.add(0)
    processor = BatchProcessor(settings.topics, max_records=500, window_keys=100, window_s=60,
                               decode=bars.decode)  # fmt: skip
    t0 = sample_tick().timestamp.replace(second=0, microsecond=0)
    ticks = [sample_tick(trade_id=str(n), timestamp=t0 + timedelta(seconds=n), size=Decimal(1))
             for n in range(3)]  # fmt: skip
    agg = [sample_tick(trade_id=str(n), timestamp=t0 + timedelta(seconds=n), size=Decimal(1),
                       source="binance.aggTrade") for n in range(3)]  # fmt: skip
    with caplog.at_level("INFO", logger="processors.derive"):
        result = await bars.process(processor, [_message(encode_ticks([*ticks, *agg]))])
        await bars.process(processor, [_message(encode_ticks(agg))])
    [output] = [o for o in result.outputs if o.topic == "md.bars.raw"]
    batch = decode(output.value)
    assert isinstance(batch, BarBatch)
    [bar] = batch.records
    assert (bar.trade_count, bar.volume) == (3, Decimal(3))
    assert registry.get_sample_value("mdp_bars_ignored_trades_total") == 6.0
    said = [r.getMessage() for r in caplog.records if "binance.aggTrade" in r.getMessage()]
    assert len(said) == 1
    assert "MDP_BARS_TRADE_SOURCES" in said[0]


async def test_bars_off_is_the_batch_processor_alone() -> None:
    settings = Settings.from_env({"MDP_BARS_ENABLED": "false"})
    bars = derived_bars(settings, CollectorRegistry())
    assert isinstance(bars, NoBars)
    processor = BatchProcessor(settings.topics, max_records=500, window_keys=100, window_s=60,
                               decode=bars.decode)  # fmt: skip
    result = await bars.process(processor, [_message(encode_ticks([sample_tick()]))])
    assert [o.topic for o in result.outputs] == ["md.ticks"]


async def test_a_rebuild_that_may_miss_older_trades_freezes_each_first_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read back from md.ticks, not from its first offset: an instrument's first bar read may
    lack trades, so it is not emitted and refuses trades; the later bars are emitted again."""
    settings = Settings.from_env({"MDP_BARS_ENABLED": "true", "MDP_BARS_INTERVALS": "1m"})
    bars = DerivedBars(settings, CollectorRegistry())
    t0 = sample_tick().timestamp.replace(second=0, microsecond=0)
    emitted = [sample_tick(trade_id=str(n), timestamp=t0 + timedelta(seconds=30 * n))
               for n in range(4)]  # minutes 0 (read in part, maybe) and 1  # fmt: skip

    async def read_back(_: Settings, partition: int, span_s: float) -> tuple[list[Tick], bool]:
        assert (partition, span_s) == (0, 60 + 2 + 600 + 5)
        return emitted, truncated

    monkeypatch.setattr("processors.derive.read_emitted", read_back)
    processor = BatchProcessor(settings.topics, max_records=500, window_keys=100, window_s=60,
                               decode=bars.decode)  # fmt: skip
    late = sample_tick(trade_id="9", timestamp=t0 + timedelta(seconds=5))
    for truncated, minutes in ((False, [0, 1]), (True, [1])):
        bars.forget([0])
        result = await bars.process(processor, [_message(encode_ticks([late]))])
        records = [r for o in result.outputs if o.topic == "md.bars.raw"
                   for r in decode(o.value).records]  # fmt: skip
        assert [(r.timestamp - t0) // timedelta(minutes=1) for r in records] == minutes
        expected_count = 3 if not truncated else 2  # minute 0 gains the late trade, or nothing
        assert isinstance(records[0], Bar)
        assert records[0].trade_count == expected_count
