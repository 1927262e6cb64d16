"""Ticks per second through one processor, faust against a plain aiokafka loop, in one run.

    .venv/bin/python -m bench.processor

For each envelope size (ticks per raw message), the same backlog of distinct ticks goes through:
the baseline, a plain aiokafka consume → BatchProcessor → produce → commit loop in this process;
then one `mdp process` faust worker. Both run the same decode/dedupe/batch code
(processors.core), so the difference is the framework. The worker is timed from its first
offset commit to its last (process start and the group join left out); CPU is user+system time
per raw message. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.report import benchmark_parser, command_line, run_benchmark
from bench.support import free_port, make_ticks, processor_process, publish, tick_messages
from marketdata.kafka import create_consumer, create_producer, ensure_topics
from marketdata.settings import Settings
from processors.core import BatchProcessor

SECTION = "## Processors (bench/processor.py)"
Messages = Sequence[tuple[bytes, bytes]]


async def _fresh(settings: Settings, messages: Messages) -> Settings:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    run = settings.model_copy(
        update={"topic_prefix": prefix, "process_group": f"{prefix}processor",
                "process_web_port": free_port(), "process_commit_interval_s": 0.2}
    )  # fmt: skip
    await ensure_topics(run, run.topics.all())
    await publish(run, run.topics.ticks_raw, messages)
    return run


async def plain_loop(settings: Settings, total: int) -> tuple[float, float]:
    """The baseline; returns (seconds, CPU seconds) for ``total`` raw messages."""
    processor = BatchProcessor(
        settings.topics, max_records=settings.process_batch_records,
        window_keys=settings.dedupe_window_keys, window_s=settings.dedupe_window_s,
    )  # fmt: skip
    consumer = create_consumer(settings, settings.topics.ticks_raw, group_id=settings.process_group)
    producer = create_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        # Timing starts with the first fetch, so that the group join is left out as for faust.
        started = cpu = 0.0
        done = 0
        while done < total:
            fetched = await consumer.getmany(
                timeout_ms=200, max_records=settings.process_take_messages
            )
            messages = [m for batch in fetched.values() for m in batch]
            if not messages:
                continue
            if not done:
                started, cpu = time.perf_counter(), time.process_time()
            result = processor.process(messages)
            for output in result.outputs:
                await producer.send(output.topic, output.value, key=output.key)
            await producer.flush()
            await consumer.commit()
            done += len(messages)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()
        await producer.stop()


def overridden_worker(
    settings: Settings, log: Path, faust_conf: dict[str, object]
) -> subprocess.Popen[bytes]:
    """`mdp process` with faust settings overridden (bench/faust_worker.py)."""
    env = {**os.environ, **settings.to_env(), "MDP_LOG_LEVEL": "INFO",
           "BENCH_FAUST_CONF": json.dumps(faust_conf)}  # fmt: skip
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "bench.faust_worker"], env=env,
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


STALL_METRICS = ("mdp_process_intake_paused_total", "mdp_process_idle_with_backlog_seconds_total",
                 "mdp_process_buffer_messages_count")  # fmt: skip


def scrape(port: int) -> dict[str, float]:
    """The worker's stall figures from its /metrics (0 when missing)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    values = dict(line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return {name: float(values.get(name, 0.0)) for name in STALL_METRICS}


async def faust_worker(
    settings: Settings, total: int, log: Path, faust_conf: dict[str, object] | None = None,
    stalls: dict[str, float] | None = None,
) -> tuple[float, float, int]:  # fmt: skip
    """One `mdp process`; returns the seconds, CPU seconds and messages between its first and
    last offset commits. With ``faust_conf``, faust settings overridden; ``stalls`` receives
    the worker's stall metrics."""
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                               group_id=settings.process_group)  # fmt: skip
    await watcher.start()
    partitions = [TopicPartition(settings.topics.ticks_raw, p)
                  for p in range(settings.topic_partitions)]  # fmt: skip
    process = (processor_process(settings, log) if faust_conf is None
               else overridden_worker(settings, log, faust_conf))  # fmt: skip
    first: tuple[float, int, float] | None = None
    try:
        while (done := sum([await watcher.committed(tp) or 0 for tp in partitions])) < total:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {log}")
            if done and first is None:
                first = (time.perf_counter(), done, cpu_seconds(process.pid))
            await asyncio.sleep(0.02)
    finally:
        await watcher.stop()
    finished, cpu = time.perf_counter(), cpu_seconds(process.pid)
    if stalls is not None:
        stalls.update(await asyncio.to_thread(scrape, settings.process_web_port))
    process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(process.wait)
    if first is None:
        raise RuntimeError("the worker committed everything at once; use a larger backlog")
    return finished - first[0], cpu - first[2], total - first[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    log = Path(tempfile.mkdtemp(prefix="bench-processor-")) / "worker.log"
    rows = []
    for per_message in args.per_message:
        count = min(args.messages, args.ticks // per_message)
        ticks = make_ticks(count * per_message, symbols=20)
        messages = tick_messages(ticks, per_message)
        base = await _fresh(settings, messages)
        base_s, base_cpu = await plain_loop(base, len(messages))
        run = await _fresh(settings, messages)
        worker_s, worker_cpu, counted = await faust_worker(run, len(messages), log)
        # Per message, over the same span as the rate.
        worker_cpu = worker_cpu / counted * len(messages)
        base_rate = len(messages) / base_s
        worker_rate = counted / worker_s
        rows.append(
            f"| {per_message} | {len(messages):,} | {base_rate / 1000:,.1f}k"
            f" | {base_rate * per_message / 1000:,.1f}k | {base_cpu / len(messages) * 1e6:,.0f}"
            f" | {worker_rate / 1000:,.1f}k | {worker_rate * per_message / 1000:,.1f}k"
            f" | {worker_cpu / len(messages) * 1e6:,.0f} | {worker_rate / base_rate:.2f}x |"
        )
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command_line('bench.processor')}`  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; Kafka 4.1.1 "
            "native on the same machine; faust-streaming 0.15.3, aiokafka 0.14.0; take "
            f"{settings.process_take_messages} messages / {settings.process_batch_ms} ms, "
            f"output batches of up to {settings.process_batch_records} records.",
            "",
            "Distinct trade ticks of 20 instruments, the whole backlog in Kafka before timing. "
            "Baseline: a plain aiokafka consume → `processors.core.BatchProcessor` → produce → "
            "commit loop in one process. Worker: one `mdp process`, timed between its first and "
            "last offset commits (committing every 0.2 s), CPU read from /proc over the same span.",
            "",
            "| ticks per raw message | messages | plain loop msgs/s | plain loop ticks/s "
            "| plain loop CPU µs/msg | faust msgs/s | faust ticks/s | faust CPU µs/msg "
            "| faust vs plain |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )


def parse_variant(text: str) -> dict[str, object]:
    """``name=value[,name=value]`` of faust settings; values read as JSON where they parse."""
    variant: dict[str, object] = {}
    for pair in text.split(","):
        name, _, value = pair.partition("=")
        try:
            variant[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            variant[name.strip()] = value
    return variant


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    return " / ".join(f"{v * scale:,.{digits}f}"
                      for v in (min(values), statistics.median(values), max(values)))  # fmt: skip


async def compare_settings(args: argparse.Namespace, settings: Settings) -> str:
    """--faust: the faust worker with each variant of its settings against the app's own, in
    rounds (each round runs every variant once, so that the machine's load falls on all)."""
    log = Path(tempfile.mkdtemp(prefix="bench-processor-")) / "worker.log"
    per_message = args.per_message[0]
    count = min(args.messages, args.ticks // per_message)
    messages = tick_messages(make_ticks(count * per_message, symbols=20), per_message)
    variants: list[dict[str, object]] = [{}, *(parse_variant(v) for v in args.faust)]
    rates: list[list[float]] = [[] for _ in variants]
    cpus: list[list[float]] = [[] for _ in variants]
    stalls: list[list[dict[str, float]]] = [[] for _ in variants]
    for _ in range(args.runs):
        for n, variant in enumerate(variants):
            run = await _fresh(settings, messages)
            seen: dict[str, float] = {}
            seconds, cpu, counted = await faust_worker(run, len(messages), log, variant, seen)
            rates[n].append(counted / seconds)
            cpus[n].append(cpu / counted)
            stalls[n].append(seen)
    base = statistics.median(rates[0])
    rows = []
    for n, variant in enumerate(variants):
        name = ", ".join(f"{k}={v}" for k, v in variant.items()) or "the app's own"
        paused = [st["mdp_process_intake_paused_total"] for st in stalls[n]]
        idle = [st["mdp_process_idle_with_backlog_seconds_total"] for st in stalls[n]]
        buffers = [st["mdp_process_buffer_messages_count"] for st in stalls[n]]
        rows.append(
            f"| {name} | {spread(rates[n], 1e-3)}k | {spread(cpus[n], 1e6, 0)} "
            f"| {statistics.median(rates[n]) / base:.2f}x | {spread(paused, digits=0)} "
            f"| {spread(idle, digits=2)} | {spread(buffers, digits=0)} |"
        )
    return "\n".join([
        SECTION, "",
        f"Command: `{command_line('bench.processor')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; load "
        f"{os.getloadavg()[0]:.1f} at the end; {len(messages):,} raw messages of {per_message} "
        f"ticks, {args.runs} rounds; min / median / max.",
        "",
        "| faust settings | msgs/s | CPU µs/msg | median vs own | intake pauses "
        "| idle with backlog s | buffers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows, "",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--messages", type=int, default=20_000, help="raw messages per run, at most"
    )
    parser.add_argument("--ticks", type=int, default=400_000, help="ticks per run, at most")
    parser.add_argument("--per-message", type=int, nargs="+", default=[1, 20, 100],
                        help="ticks per raw message, one run each")  # fmt: skip
    parser.add_argument("--faust", nargs="+", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                        help="compare the faust worker with these settings overridden (one "
                        "variant each) against its own, at the first --per-message")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="rounds of --faust")
    run_benchmark(
        parser,
        lambda args, settings: (compare_settings if args.faust else measure)(args, settings),
        SECTION, argv,
    )  # fmt: skip


if __name__ == "__main__":
    main()
