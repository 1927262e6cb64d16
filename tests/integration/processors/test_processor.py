"""`mdp process` workers against a real broker."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import urllib.request
from collections import defaultdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from marketdata.codec import BarBatch, TickBatch, decode, encode_bars, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE
from marketdata.kafka import admin_client
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from tests.integration.processors.support import free_port, processor_process, read_topic
from tests.integration.sinks.support import (
    bar_messages,
    make_bar,
    make_ticks,
    publish,
    tick_messages,
)


def _ticks_of(messages: list[ConsumerRecord[bytes, bytes]]) -> list[Tick]:
    out: list[Tick] = []
    for message in messages:
        batch = decode(message.value)
        assert isinstance(batch, TickBatch)
        assert {instrument_key(t.exchange, t.symbol) for t in batch.records} == {message.key}
        out.extend(batch.records)
    return out


async def _ticks_when(settings: Settings, count: int, within: float = 90.0) -> list[Tick]:
    """The topic's ticks once it holds at least ``count`` of them (then read to idle, so that
    duplicates after them show too), or what it holds after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    ticks = _ticks_of(await read_topic(settings, settings.topics.ticks, idle_s=5))
    while len(ticks) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1)
        ticks = _ticks_of(await read_topic(settings, settings.topics.ticks, idle_s=5))
    return ticks


def _assert_once_and_in_order(ticks: list[Tick], expected: list[Tick]) -> None:
    assert sorted(t.trade_id for t in ticks) == sorted(t.trade_id for t in expected)
    by_symbol: dict[str, list[int]] = defaultdict(list)
    for tick in ticks:
        by_symbol[tick.symbol].append(int(tick.trade_id))
    for symbol, ids in by_symbol.items():
        assert ids == sorted(ids), f"{symbol} out of order"


async def test_duplicates_within_across_batches_and_after_a_restart_are_dropped(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    s = processor_settings
    ticks = make_ticks(2000)
    messages = tick_messages(ticks, per_message=20)
    sym0 = [t for t in ticks if t.symbol == "SYM0"][:5]
    inside = (instrument_key("BINANCE", "SYM0"), encode_ticks(sym0 + sym0))
    await publish(s, s.topics.ticks_raw, [*messages, *messages[10:30], inside])
    processes.append(processor_process(s, log))
    emitted = await _ticks_when(s, len(ticks))
    _assert_once_and_in_order(emitted, ticks)

    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(timeout=60) == 0
    more = make_ticks(2400)[2000:]
    await publish(s, s.topics.ticks_raw, [*messages[50:70], *tick_messages(more, 20)])
    processes.append(processor_process(s, log))
    # The old output is there at once; a worker slow to start (a loaded machine) must not end
    # the read before it emitted anything new.
    emitted = await _ticks_when(s, len(ticks + more))
    _assert_once_and_in_order(emitted, ticks + more)


async def test_bar_versions_in_one_batch_collapse_to_the_latest(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    # In one raw message, so that they are in one buffer: the intake hands a buffer out as soon
    # as nothing more is queued, so versions in messages of their own may go out apart (each a
    # newer version of the stored bar).
    s = processor_settings
    versions = [make_bar(0, closed=False, close="100.5"), make_bar(0, closed=False, close="101"),
                make_bar(0, closed=True, close="101.5"), make_bar(1, closed=False)]  # fmt: skip
    key = bar_messages(versions)[0][0]
    await publish(s, s.topics.bars_raw, [(key, encode_bars(versions))])
    processes.append(processor_process(s, log))
    await read_topic(s, s.topics.bars, until=1, within=60)  # the worker may be slow to start
    bars = []
    for message in await read_topic(s, s.topics.bars, idle_s=2):
        batch = decode(message.value)
        assert isinstance(batch, BarBatch)
        bars.extend(batch.records)
    assert bars == [versions[2], versions[3]]


async def test_bad_input_goes_to_the_dlq_and_good_records_pass(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    s = processor_settings
    ticks = make_ticks(100)
    poison: list[tuple[bytes | None, bytes]] = [
        (b"BINANCE:SYM0", b"\xff\xfe garbage"),
        (b"BINANCE:SYM1", b'{"kind":"ticks","v":2,"records":[]}'),
        (b"BINANCE:SYM2", encode_ticks(ticks[:1]).replace(b'"size":"', b'"size":"-')),
    ]
    await publish(s, s.topics.ticks_raw, [*tick_messages(ticks, 10), *poison])
    processes.append(processor_process(s, log))
    emitted = await _ticks_when(s, len(ticks))
    _assert_once_and_in_order(emitted, ticks)
    letters = await read_topic(s, s.topics.dlq, until=len(poison))
    assert sorted(m.value for m in letters) == sorted(v for _, v in poison)
    reasons = sorted(dict(m.headers)[HEADER_REASON].decode() for m in letters)
    assert any("malformed JSON" in r for r in reasons)
    assert any("schema version 2" in r for r in reasons)
    assert any("size" in r for r in reasons)
    assert {dict(m.headers)[HEADER_STAGE] for m in letters} == {b"processor"}
    assert processes[0].poll() is None  # bad input never kills the worker


async def test_two_workers_one_killed_lose_nothing(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    s = processor_settings
    ticks = make_ticks(20_000)
    messages = tick_messages(ticks, per_message=10)
    processes.extend([processor_process(s, log), processor_process(s, log, free_port())])
    await asyncio.sleep(8)  # both join the group
    stream = asyncio.create_task(publish(s, s.topics.ticks_raw, messages, pace_s=0.003))
    await asyncio.sleep(3)
    processes[0].kill()
    await stream
    emitted = _ticks_of(await read_topic(s, s.topics.ticks, idle_s=15, within=120))
    assert {t.trade_id for t in emitted} == {t.trade_id for t in ticks}  # nothing lost
    duplicates = len(emitted) - len(ticks)
    assert duplicates >= 0  # replays of the dead worker's uncommitted batch; the sink absorbs them
    print(f"duplicates after the kill: {duplicates}")
    assert processes[1].poll() is None


async def test_metrics_and_health(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    s = processor_settings
    ticks = make_ticks(300)
    messages = tick_messages(ticks, per_message=10)
    await publish(s, s.topics.ticks_raw, [*messages, *messages[:5]])
    processes.append(processor_process(s, log))
    await _ticks_when(s, len(ticks))
    base = f"http://127.0.0.1:{s.process_web_port}"
    health = await asyncio.to_thread(urllib.request.urlopen, f"{base}/health", timeout=5)
    assert health.status == 200
    text = (await asyncio.to_thread(urllib.request.urlopen, f"{base}/metrics", timeout=5)).read()
    lines = text.decode().splitlines()
    replayed = sum(len(decode(value).records) for _, value in messages[:5])
    assert f"mdp_process_records_in_total {len(ticks) + replayed}.0" in lines
    assert 'mdp_process_records_out_total{kind="tick"} 300.0' in lines
    assert f"mdp_process_duplicates_dropped_total {replayed}.0" in lines


async def test_deeply_nested_poison_then_a_valid_record_on_each_raw_topic(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    # 5,000 `[` deep inside an otherwise valid envelope: once a RecursionError that ended the
    # agent, which faust restarted past both messages.
    s = processor_settings
    deep = b"[" * 5000 + b"]" * 5000
    tick, bar = make_ticks(1)[0], make_bar(0)
    key = instrument_key(tick.exchange, tick.symbol)
    tick_poison = encode_ticks([tick]).replace(b'"extras":{"n":0}', b'"extras":{"n":' + deep + b"}")
    bar_poison = encode_bars([bar]).replace(b'"trade_count":40', b'"trade_count":40,"x":' + deep)
    assert deep in tick_poison
    assert deep in bar_poison
    await publish(s, s.topics.ticks_raw, [(key, tick_poison), (key, encode_ticks([tick]))])
    await publish(s, s.topics.bars_raw, [(key, bar_poison), (key, encode_bars([bar]))])
    processes.append(processor_process(s, log))
    ticks = _ticks_of(await read_topic(s, s.topics.ticks, until=1, within=60))
    assert ticks == [tick]
    bars = [r for m in await read_topic(s, s.topics.bars, until=1, within=30)
            for r in decode(m.value).records]  # fmt: skip
    assert bars == [bar]
    letters = await read_topic(s, s.topics.dlq, until=2, within=30)
    assert sorted(m.value for m in letters) == sorted([tick_poison, bar_poison])
    for letter in letters:
        headers = dict(letter.headers)
        assert headers[HEADER_STAGE] == b"processor"
        assert re.search(rb"nested too deeply|RecursionError", headers[HEADER_REASON])
    assert processes[0].poll() is None
    # faust's line when an agent dies (and is restarted past its buffer)
    assert "Crashed reason=" not in await asyncio.to_thread(log.read_text, errors="replace")


async def _limit_message_bytes(settings: Settings, topic: str, limit: int) -> None:
    async with admin_client(settings) as admin:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
        )])  # fmt: skip


async def _committed(settings: Settings, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.process_group,
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        partitions = range(settings.topic_partitions)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()


async def test_a_buffer_whose_output_the_broker_refuses_is_not_committed_and_the_worker_exits(
    processor_settings: Settings, processes: list[subprocess.Popen[bytes]], log: Path
) -> None:
    # The broker refuses every batch on md.ticks (a too-small max.message.bytes): faust's flush
    # before a commit does not notice, so this once committed past the tick and lost it.
    s = processor_settings
    ticks = make_ticks(5)
    await _limit_message_bytes(s, s.topics.ticks, 64)
    await publish(s, s.topics.ticks_raw, tick_messages(ticks, per_message=5))
    processes.append(processor_process(s, log))
    assert await asyncio.to_thread(processes[0].wait, 60) == 1
    logged = await asyncio.to_thread(log.read_text, errors="replace")
    assert "processing failed, its input is not committed" in logged
    assert await read_topic(s, s.topics.ticks, idle_s=1) == []
    committed = await _committed(s, s.topics.ticks_raw)
    assert len(committed) == s.topic_partitions
    assert not [offset for offset in committed.values() if offset]

    await _limit_message_bytes(s, s.topics.ticks, 1024 * 1024)
    processes.append(processor_process(s, log))
    emitted = _ticks_of(await read_topic(s, s.topics.ticks, until=len(ticks), within=60))
    assert sorted(emitted, key=lambda t: int(t.trade_id)) == ticks
    assert processes[1].poll() is None
