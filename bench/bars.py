"""The processor's cost of building bars from trades: one `mdp process` with derived bars off
against the same worker with them on, over the same backlog, in one run.

    .venv/bin/python -m bench.bars

Each of --repeat rounds makes a backlog of distinct trade ticks (20 instruments, 100 a message,
about three trades a millisecond, so the default 1s and 1m bars each take many trades) and runs
one worker over it with ``MDP_BARS_ENABLED`` false, then one over a fresh copy with it true (the
order alternates between rounds, so neither always runs on a warmer machine). Each worker is
timed between its first and last offset commits, as bench/processor.py does, and its CPU is
read from /proc over the same span. The "on" run must have published derived bars to
md.bars.raw, or the round fails. Figures are min / median / max over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import TopicPartition

from bench.processor import _fresh, faust_worker
from bench.report import benchmark_parser, command_line, run_benchmark
from bench.support import make_ticks, tick_messages
from marketdata.kafka import create_consumer
from marketdata.settings import Settings

SECTION = "## Derived bars in the processor (bench/bars.py)"
PER_MESSAGE = 100


async def _bars_published(settings: Settings) -> int:
    """Messages on md.bars.raw: the derived bars' envelopes (nothing else writes there)."""
    consumer = create_consumer(settings, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topics.bars_raw, p)
                      for p in range(settings.topic_partitions)]  # fmt: skip
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _round(
    settings: Settings, messages: list[tuple[bytes, bytes]], ticks: int, log: Path, on: bool
) -> tuple[float, float]:
    """(ticks/s, CPU µs a tick) of one worker with bars ``on`` or off."""
    run = await _fresh(settings.model_copy(update={"bars_enabled": on}), messages)
    seconds, cpu, counted = await faust_worker(run, len(messages), log)
    if on and not await _bars_published(run):
        raise RuntimeError(f"bars were on but none was published; see {log}")
    per_tick = ticks / len(messages)
    return counted * per_tick / seconds, cpu / (counted * per_tick) * 1e6


def _spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(f"{v / scale:,.{digits}f}" for v in (low, mid, high))


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    log = Path(tempfile.mkdtemp(prefix="bench-bars-")) / "worker.log"
    ticks = make_ticks(args.ticks, symbols=20)
    messages = tick_messages(ticks, PER_MESSAGE)
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for round_ in range(args.repeat):
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            results[on].append(await _round(settings, messages, len(ticks), log, on))
    off, with_bars = results[False], results[True]
    ratios = [b[0] / a[0] for a, b in zip(off, with_bars, strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(off, with_bars, strict=True)]
    load = os.getloadavg()[0]
    rows = [
        f"| off (baseline) | {_spread([r[0] for r in off], 1000)}k "
        f"| {_spread([r[1] for r in off], digits=2)} | 1.00x | 1.00x |",
        f"| on ({settings.bars_intervals}) | {_spread([r[0] for r in with_bars], 1000)}k "
        f"| {_spread([r[1] for r in with_bars], digits=2)} | {_spread(ratios, digits=2)}x "
        f"| {_spread(cpu_ratios, digits=2)}x |",
    ]
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command_line('bench.bars')}`  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; load "
            f"average {load:.2f} at the end; Kafka native on the same machine; {args.repeat} "
            "rounds, each running the worker with bars off and on over the same backlog; "
            "figures are min / median / max over the rounds.",
            "",
            f"{len(ticks):,} distinct trade ticks of 20 instruments, {PER_MESSAGE} a message, in "
            "Kafka before timing; one `mdp process` each, timed between its first and last offset "
            "commits; CPU from /proc over the same span. Ratios are of the same round.",
            "",
            "| derived bars | ticks/s | CPU µs a tick | ticks/s vs off | CPU vs off |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--ticks", type=int, default=300_000, help="ticks in the backlog")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (at least 3 for figures)")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
