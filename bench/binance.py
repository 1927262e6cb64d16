"""Binance normalisation and publishing, against raw JSON parsing, in one run.

    .venv/bin/python -m bench.binance

Part 1, per core: the recorded stream payloads (sandbox/fixtures/binance: trade, aggTrade, kline,
bookTicker) parsed with ``orjson.loads`` alone (the baseline), then parsed and normalised to
records (``stream_event``), then also encoded into one-record envelopes. Part 2: records
published through the producer's Publisher (envelopes of 100 per instrument) into a real
broker, until acknowledged, against raw aiokafka sends of the same encoded values.
Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import msgspec
import orjson

from bench.report import benchmark_parser, command_line, run_benchmark
from marketdata.codec import encode_bars, encode_ticks
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from producers.binance.normalise import stream_event
from producers.publisher import Publisher
from sandbox import FIXTURES as RECORDINGS

SECTION = "## Binance producer (bench/binance.py)"
FIXTURES = RECORDINGS / "binance"
KINDS = ("trade.json", "aggTrade.json", "kline.json", "bookTicker.json")


def _rate(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    work()
    return count / (time.process_time() - started)


def normalise_rates(frames: Sequence[bytes]) -> dict[str, float]:
    received = datetime.now(UTC)
    decoder = msgspec.json.Decoder()

    def parse() -> None:
        for frame in frames:
            orjson.loads(frame)

    def normalise() -> None:
        for frame in frames:
            stream_event(orjson.loads(frame), received)

    def normalise_encode() -> None:
        for frame in frames:
            for record in stream_event(orjson.loads(frame), received) or []:
                if isinstance(record, Tick):
                    encode_ticks([record])
                else:
                    encode_bars([record])

    def stdlib_json() -> None:
        for frame in frames:
            stream_event(json.loads(frame), received)

    def msgspec_json() -> None:
        for frame in frames:
            stream_event(decoder.decode(frame), received)

    return {
        "orjson.loads alone (baseline)": _rate(parse, len(frames)),
        "json.loads + normalise": _rate(stdlib_json, len(frames)),
        "orjson.loads + normalise": _rate(normalise, len(frames)),
        "msgspec decode + normalise (what the producer runs)": _rate(msgspec_json, len(frames)),
        "orjson.loads + normalise + encode": _rate(normalise_encode, len(frames)),
    }


async def publish_rates(settings: Settings, ticks: Sequence[Tick]) -> dict[str, float]:
    run = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."})
    await ensure_topics(run, run.topics.all())
    producer = create_producer(run)
    await producer.start()
    try:
        values = [encode_ticks([t]) for t in ticks]
        started = time.perf_counter()
        futures = [await producer.send(run.topics.ticks_raw, v, key=b"BINANCE:BTCUSDT")
                   for v in values]  # fmt: skip
        await asyncio.gather(*futures)
        raw = len(ticks) / (time.perf_counter() - started)
        publisher = Publisher(producer, run.topics, stage="bench", max_records=100)
        started = time.perf_counter()
        for start in range(0, len(ticks), 1000):
            await publisher.add(ticks[start : start + 1000])
        await publisher.flush(wait=True)
        enveloped = len(ticks) / (time.perf_counter() - started)
    finally:
        await producer.stop()
    return {
        "raw aiokafka, one record a message (baseline)": raw,
        "Publisher, envelopes of 100": enveloped,
    }


def _spread(values: Sequence[float], scale: float = 1.0, fmt: str = ",.1f") -> str:
    """min / median / max of one figure over the runs."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(f"{v * scale:{fmt}}" for v in (low, mid, high))


def _table(runs: Sequence[dict[str, float]], unit: str, cpu: bool) -> list[str]:
    """One row a path: its rate and its ratio to the baseline (the first path) of the same run,
    each min / median / max over the runs; with ``cpu``, CPU µs a frame at the median."""
    names = list(runs[0])
    head = f"| path | {unit} (min / median / max) | vs baseline (min / median / max) |"
    rows = [head + (" CPU µs a frame (median) |" if cpu else ""),
            "| --- | ---: | ---: |" + (" ---: |" if cpu else "")]  # fmt: skip
    for name in names:
        rates = [run[name] for run in runs]
        ratios = [run[name] / run[names[0]] for run in runs]
        row = f"| {name} | {_spread(rates, 1 / 1000)}k | {_spread(ratios, fmt='.2f')}x |"
        rows.append(row + (f" {1e6 / statistics.median(rates):.1f} |" if cpu else ""))
    return rows


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    payloads = [(FIXTURES / name).read_bytes().strip() for name in KINDS]
    frames = [payloads[n % len(payloads)] for n in range(args.frames)]
    trade = stream_event(orjson.loads(payloads[0]), datetime.now(UTC)) or []
    template = trade[0]
    assert isinstance(template, Tick)
    ticks = [Tick(**{**{f: getattr(template, f) for f in template.__struct_fields__},
                     "trade_id": str(n)}) for n in range(args.publish)]  # fmt: skip
    normalised, published = [], []
    for _ in range(args.repeat):
        normalised.append(normalise_rates(frames))
        published.append(await publish_rates(settings, ticks))
    lines = [
        SECTION,
        "",
        f"Command: `{command_line('bench.binance')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; "
        f"orjson {orjson.__version__}; Kafka 4.1.1 native on the same machine; "
        f"{args.repeat} runs, each measuring every path and its baseline.",
        "",
        f"Normalisation, {args.frames:,} recorded frames (trade, aggTrade, kline, bookTicker in "
        "turn), CPU time of the one process:",
        "",
        *_table(normalised, "frames/s", cpu=True),
        "",
        f"Publishing {args.publish:,} trade ticks of one instrument until acknowledged "
        "(acks=all, idempotent, zstd), wall clock:",
        "",
        *_table(published, "records/s", cpu=False),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--frames", type=int, default=200_000, help="frames to normalise")
    parser.add_argument("--publish", type=int, default=100_000, help="ticks to publish")
    parser.add_argument("--repeat", type=int, default=3, help="runs (min / median / max)")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
