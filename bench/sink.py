"""Sink throughput against raw COPY, on the same database and the same rows, in one run.

    .venv/bin/python -m bench.sink --rows 200000

Rows per second for: raw binary COPY into market_data_ticks (the physical limit), an
``executemany`` upsert, the sink's BatchWriter alone, and ``mdp sink`` as its own process from
a Kafka backlog to committed rows, with ticks arriving as batches and as single records. The
backlog is published before the sink starts, so the database is the slower side throughout;
the sink's peak RSS then shows whether its memory stays bounded. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from bench.report import benchmark_parser, command_line, run_benchmark
from bench.support import (
    count_rows,
    make_ticks,
    publish,
    sink_process,
    tick_messages,
)
from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from sinks.writer import TICK_COLUMNS, BatchWriter, _tick_row, copy_rows, use_msgspec_jsonb

SECTION = "## TimescaleDB sink (bench/sink.py)"
COPY_SQL = "COPY market_data_ticks ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{name}"' for name, _ in TICK_COLUMNS)
)


def _truncate(settings: Settings) -> None:
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute("TRUNCATE market_data_ticks")


async def _timed(settings: Settings, work: Callable[[], Awaitable[None]]) -> float:
    await asyncio.to_thread(_truncate, settings)
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def raw_copy(settings: Settings, ticks: Sequence[Tick]) -> None:
    """One binary COPY of every row, formatted as the writer formats them (the same loop and
    jsonb dumper): the fastest the client side gets, so the baseline stays the limit."""
    async with await psycopg.AsyncConnection.connect(settings.database) as conn:
        use_msgspec_jsonb(conn)
        async with conn.cursor() as cur:
            types = [kind for _, kind in TICK_COLUMNS]
            await copy_rows(cur, sql.SQL(COPY_SQL), types, map(_tick_row, ticks))
        await conn.commit()


async def executemany_upsert(settings: Settings, ticks: Sequence[Tick]) -> None:
    columns = ", ".join(f'"{name}"' for name, _ in TICK_COLUMNS)
    marks = ", ".join(["%s"] * len(TICK_COLUMNS))
    statement = (
        f"INSERT INTO market_data_ticks ({columns}) VALUES ({marks})"  # noqa: S608 - constants
        " ON CONFLICT DO NOTHING"
    )
    async with await psycopg.AsyncConnection.connect(settings.database) as conn:
        async with conn.cursor() as cur:
            rows = [(*_tick_row(t)[:-1], psycopg.types.json.Jsonb(t.extras)) for t in ticks]
            await cur.executemany(statement, rows)
        await conn.commit()


async def writer_only(settings: Settings, ticks: Sequence[Tick], batch: int) -> None:
    writer = BatchWriter()
    async with await psycopg.AsyncConnection.connect(settings.database) as conn:
        await writer.prepare(conn)
        for start in range(0, len(ticks), batch):
            await writer.write(conn, ticks[start : start + batch], [])


async def sink_end_to_end(
    settings: Settings, ticks: Sequence[Tick], per_message: int, log: Path
) -> tuple[float, float, int]:
    """Publish the backlog, then time `mdp sink` from launch to the last row; return that time,
    the steady rate (rows after the first commit over the time after it) and the process's peak
    RSS in KiB."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    run = settings.model_copy(update={"topic_prefix": prefix, "sink_group": f"{prefix}sink"})
    await ensure_topics(run, run.topics.all())
    messages = tick_messages(ticks, per_message)
    await publish(run, run.topics.ticks, messages)
    await asyncio.to_thread(_truncate, run)
    # Progress is read from the group's committed offsets (rows are stored before them): a
    # count(*) every few milliseconds would take the database's CPU from the sink.
    watcher = AIOKafkaConsumer(bootstrap_servers=run.kafka_bootstrap, group_id=run.sink_group)
    await watcher.start()
    partitions = [TopicPartition(run.topics.ticks, p) for p in range(run.topic_partitions)]
    started = time.perf_counter()
    process = sink_process(run, log)
    first: tuple[float, int] | None = None
    try:
        while (done := sum([await watcher.committed(tp) or 0 for tp in partitions])) < len(
            messages
        ):
            if process.poll() is not None:
                raise RuntimeError(f"sink exited early; see {log}")
            if done and first is None:
                first = (time.perf_counter(), done)
            await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
    finished = time.perf_counter()
    elapsed = finished - started
    steady = (
        (len(messages) - first[1]) * per_message / (finished - first[0]) if first else float("nan")
    )
    process.send_signal(signal.SIGTERM)
    _, status, usage = await asyncio.to_thread(os.wait4, process.pid, 0)
    rows = await asyncio.to_thread(count_rows, run)
    if rows != len(ticks) or os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"sink stored {rows} rows, exit status {status}; see {log}")
    return elapsed, steady, int(usage.ru_maxrss)


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds / 1000:,.1f}k"


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    migrate.upgrade(settings)
    ticks = make_ticks(args.rows, symbols=20)
    singles = ticks[: args.single_rows]
    log = Path(tempfile.mkdtemp(prefix="bench-sink-")) / "sink.log"
    results: list[tuple[str, int, float, str, str]] = []

    copy_s = await _timed(settings, lambda: raw_copy(settings, ticks))
    results.append(
        ("raw binary COPY into market_data_ticks (baseline)", len(ticks), copy_s, "", "")
    )
    many_s = await _timed(settings, lambda: executemany_upsert(settings, ticks))
    results.append(("executemany INSERT … ON CONFLICT", len(ticks), many_s, "", ""))
    copy_rate = len(ticks) / copy_s
    write_s = await _timed(settings, lambda: writer_only(settings, ticks, args.batch_rows))
    results.append(
        (f"BatchWriter alone ({args.batch_rows:,}-row transactions)", len(ticks), write_s, "", "")
    )
    for label, rows, per_message in (
        (f"{args.per_message} ticks a message", ticks, args.per_message),
        ("1 tick a message", singles, 1),
    ):
        sink_s, sink_rate, rss_kib = await sink_end_to_end(settings, rows, per_message, log)
        results.append(
            (f"`mdp sink`, Kafka → rows, {label}", len(rows), sink_s,
             f"{sink_rate / 1000:,.1f}k ({sink_rate / copy_rate:.2f}x)",
             f"{rss_kib / 1024:.0f} MiB")
        )  # fmt: skip
    await asyncio.to_thread(_truncate, settings)

    lines = [
        SECTION,
        "",
        f"Command: `{command_line('bench.sink')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; PostgreSQL "
        f"{server_version(settings)} (plain, no TimescaleDB) and Kafka 4.1.1 native on the same "
        "machine; sink batch "
        f"{settings.sink_batch_rows:,} rows / {settings.sink_batch_ms} ms.",
        "",
        "Same generated ticks (20 instruments, distinct trades, 1 in 5 with extras) for every "
        "row, table truncated before each. The sink rows time `mdp sink` as a separate process "
        "from launch until the last row is committed, with the whole backlog already in Kafka "
        "(the database is the slower side); progress is read from the group's committed offsets "
        "so that polling costs the database nothing. 'After the first commit' leaves out process "
        "start and the group join. Peak RSS is the sink process's: with a backlog far larger than "
        "a batch it stays at what the batch, aiokafka's fetch buffers and the interpreter need.",
        "",
        "| path | rows | seconds | rows/s | vs raw COPY | after the first commit | sink peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, count, seconds, after_first, rss in results:
        ratio = count / seconds / copy_rate
        lines.append(
            f"| {name} | {count:,} | {seconds:.2f} | {_rate(count, seconds)} | {ratio:.2f}x"
            f" | {after_first} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def server_version(settings: Settings) -> str:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rows", type=int, default=200_000, help="ticks for the batched paths")
    parser.add_argument(
        "--single-rows", type=int, default=100_000, help="ticks sent one per message"
    )
    parser.add_argument("--per-message", type=int, default=100, help="ticks per Kafka message")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="rows per writer batch")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
