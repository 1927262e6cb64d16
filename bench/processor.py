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
import os
import signal
import tempfile
import time
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


async def faust_worker(settings: Settings, total: int, log: Path) -> tuple[float, float, int]:
    """One `mdp process`; returns the seconds, CPU seconds and messages between its first and
    last offset commits."""
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                               group_id=settings.process_group)  # fmt: skip
    await watcher.start()
    partitions = [TopicPartition(settings.topics.ticks_raw, p)
                  for p in range(settings.topic_partitions)]  # fmt: skip
    process = processor_process(settings, log)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--messages", type=int, default=20_000, help="raw messages per run, at most"
    )
    parser.add_argument("--ticks", type=int, default=400_000, help="ticks per run, at most")
    parser.add_argument("--per-message", type=int, nargs="+", default=[1, 20, 100],
                        help="ticks per raw message, one run each")  # fmt: skip
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
