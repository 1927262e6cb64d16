"""Sink throughput against raw COPY and against a peer, on the same database and rows, in one run.

    .venv/bin/python -m bench.sink --rows 200000 --single-rows 100000 --repeat 3

Each of --repeat rounds times, on the same generated ticks: raw binary COPY into
market_data_ticks (the physical limit, the baseline), an ``executemany`` upsert, the sink's
BatchWriter alone, and for ticks arriving as batches and as single records, ``mdp sink`` as its
own process from a Kafka backlog to committed rows, beside the peer: a Quix Streams application
with Quix's PostgreSQLSink (``execute_values``; bench/quix_peer.py) storing the same topic's rows
into a table of its own, under a consumer group of its own. Which of the two goes first alternates
between rounds. The backlog is published before either starts, so the database is the slower
side throughout. Figures are min / median / max over the rounds, ratios of the same round; CPU is
per 100k rows, the path's own process (read from /proc) and the whole machine's (PostgreSQL and
Kafka included). Results go to BENCHMARKS.md.

quixstreams pins pydantic below the version this project requires, so it cannot share .venv:
the peer runs in a virtualenv of its own (--quix-venv), made with pip on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from bench.processor import cpu_seconds
from bench.report import benchmark_parser, command_line, run_benchmark
from bench.support import make_ticks, publish, sink_process, tick_messages
from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from sinks.writer import TICK_COLUMNS, BatchWriter, _tick_row, copy_rows, use_msgspec_jsonb

SECTION = "## TimescaleDB sink (bench/sink.py)"
COPY_SQL = "COPY market_data_ticks ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{name}"' for name, _ in TICK_COLUMNS)
)
# The peer, pinned so that its figures compare from one run to the next.
QUIX_REQUIREMENT: Final = "quixstreams[postgresql]==3.28.1"
QUIX_PEER: Final = Path(__file__).with_name("quix_peer.py")
# Left after the first commit, for the figures after it: a share of the messages, and seconds.
MIN_SPAN: Final = 0.2
MIN_SPAN_S: Final = 1.0


@dataclass(frozen=True)
class Sample:
    """One path in one round. ``rate`` is rows over the whole time; for the processes,
    ``steady`` is rows/s after their first offset commit (process start and the group join
    left out) and the CPU figures are over that same span; ``extras`` counts rows stored with
    their extras, ``rss_kib`` is the process's peak."""

    rows: int
    rate: float
    cpu: float  # CPU-s per 100k rows, the path's own process
    machine: float  # CPU-s per 100k rows, every process on the machine
    steady: float = float("nan")
    extras: int = -1
    rss_kib: int = 0
    cpu_whole: float = math.nan  # CPU-s per 100k rows from launch, start-up included


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy, over all cores (/proc/stat)."""
    jiffies = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """A running process's peak RSS so far (VmHWM). Not wait4's ru_maxrss: Linux carries the
    parent's peak at the fork into a child's, so every child of this process (which holds the
    whole backlog) would report at least this process's size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _truncate(settings: Settings, table: str = "market_data_ticks") -> None:
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(table)))


async def _timed(settings: Settings, rows: int, work: Callable[[], Awaitable[None]]) -> Sample:
    await asyncio.to_thread(_truncate, settings)
    cpu, busy, started = time.process_time(), machine_busy(), time.perf_counter()
    await work()
    seconds = time.perf_counter() - started
    per = 100_000 / rows
    return Sample(rows, rows / seconds, (time.process_time() - cpu) * per,
                  (machine_busy() - busy) * per)  # fmt: skip


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


@dataclass(frozen=True)
class Backlog:
    """A round's ticks topic (in ``run``'s topics): ``rows`` ticks in ``messages`` messages."""

    run: Settings
    rows: int
    messages: int
    per_message: int


async def _follow(
    backlog: Backlog, group: str, launch: Callable[[], subprocess.Popen[bytes]], log: Path
) -> Sample:
    """Launch a consumer process and time it until ``group`` has committed ``messages`` offsets
    of the ticks topic; then stop it. Progress is read from the group's committed offsets (rows
    are stored before them): a count(*) every few milliseconds would take the database's CPU."""
    settings, messages, per_message = backlog.run, backlog.messages, backlog.per_message
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await watcher.start()
    partitions = [
        TopicPartition(settings.topics.ticks, p) for p in range(settings.topic_partitions)
    ]
    started = time.perf_counter()
    process = launch()
    first: tuple[float, int, float, float] | None = None
    try:
        while (done := sum([await watcher.committed(tp) or 0 for tp in partitions])) < messages:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited early; see {log}")
            if done and first is None:
                first = (time.perf_counter(), done, cpu_seconds(process.pid), machine_busy())
            await asyncio.sleep(0.01)
        finished, cpu, busy = time.perf_counter(), cpu_seconds(process.pid), machine_busy()
        peak = peak_rss_kib(process.pid)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        await watcher.stop()
    process.send_signal(signal.SIGTERM)
    _, status, _ = await asyncio.to_thread(os.wait4, process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{process.args!r} exited with status {status}; see {log}")
    rows = messages * per_message
    whole = cpu / rows * 100_000  # start-up included
    # After the first commit only when that leaves a span to measure: a peer committing every
    # 5 s may have stored nearly everything at its first commit, whose partitions' offsets
    # arrive a few milliseconds apart.
    if (first is None or (messages - first[1]) < MIN_SPAN * messages
            or finished - first[0] < MIN_SPAN_S):  # fmt: skip
        return Sample(rows, rows / (finished - started), math.nan, math.nan,
                      rss_kib=peak, cpu_whole=whole)  # fmt: skip
    span_rows = (messages - first[1]) * per_message
    per = 100_000 / span_rows
    return Sample(
        rows, rows / (finished - started), (cpu - first[2]) * per, (busy - first[3]) * per,
        steady=span_rows / (finished - first[0]), rss_kib=peak, cpu_whole=whole,
    )  # fmt: skip


def stored(settings: Settings, table: str) -> tuple[int, int]:
    """Rows in ``table`` and how many of them have extras."""
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*), count(extras) FROM {}").format(sql.SQL(table))
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def mdp_sink(backlog: Backlog, log: Path) -> Sample:
    run = backlog.run
    await asyncio.to_thread(_truncate, run)
    sample = await _follow(backlog, run.sink_group, lambda: sink_process(run, log), log)
    count, extras = await asyncio.to_thread(stored, run, "market_data_ticks")
    if count != backlog.rows:
        raise RuntimeError(f"`mdp sink` stored {count} rows of {backlog.rows}; see {log}")
    return Sample(**{**sample.__dict__, "extras": extras})


async def quix_sink(
    backlog: Backlog, python: Path, schema: str, commit_s: float, log: Path
) -> Sample:
    """The peer over the same topic, under a group of its own, into ``schema``'s table."""
    run = backlog.run
    table = f"{schema}.market_data_ticks"
    await asyncio.to_thread(_truncate, run, table)
    group = f"{run.topic_prefix}quix"
    state = tempfile.mkdtemp(prefix="bench-quix-state-")
    command = [
        str(python), str(QUIX_PEER), "--broker", run.kafka_bootstrap, "--topic", run.topics.ticks,
        "--group", group, "--dsn", run.database, "--schema", schema,
        "--commit-s", str(commit_s), "--state-dir", state,
    ]  # fmt: skip

    def launch() -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    sample = await _follow(backlog, group, launch, log)
    count, extras = await asyncio.to_thread(stored, run, table)
    if count != backlog.rows:
        raise RuntimeError(f"Quix's sink stored {count} rows of {backlog.rows}; see {log}")
    return Sample(**{**sample.__dict__, "extras": extras})


def peer_table(settings: Settings, schema: str) -> None:
    """The peer's market_data_ticks: a copy of the real one (key, indexes) in ``schema``."""
    table = sql.SQL("{}.market_data_ticks").format(sql.Identifier(schema))
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE market_data_ticks INCLUDING ALL)").format(table)
        )
        # Quix's sink reads the table's key from information_schema joining on the constraint's
        # name alone, so it would see public's key too under the name LIKE copies.
        rename = "ALTER TABLE {} RENAME CONSTRAINT market_data_ticks_pkey TO {}"
        conn.execute(sql.SQL(rename).format(table, sql.Identifier(f"{schema}_pkey")))


def quix_python(venv: Path) -> Path:
    """The peer's interpreter: ``venv``, made (or brought up to QUIX_REQUIREMENT) with pip."""
    python, stamp = venv / "bin" / "python", venv / "bench-requirement"
    if python.exists() and stamp.exists() and stamp.read_text() == QUIX_REQUIREMENT:
        return python
    print(f"bench.sink: installing {QUIX_REQUIREMENT} into {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", QUIX_REQUIREMENT], check=True)
    stamp.write_text(QUIX_REQUIREMENT)
    return python


def ratio(value: float, base: float) -> float:
    """``value / base``, NaN (not measured) where ``base`` is zero: a span too short for the
    CPU clock's 10 ms ticks reads as no CPU at all."""
    return value / base if base else math.nan


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """min / median / max of ``values`` over ``scale``; NaN values (not measured) are left out."""
    kept = [v for v in values if v == v]  # noqa: PLR0124 - NaN is the one value unequal to itself
    if not kept:
        return "n/a"
    low, mid, high = min(kept), statistics.median(kept), max(kept)
    return " / ".join(f"{v / scale:,.{digits}f}{unit}" for v in (low, mid, high))


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1 (3 or more for figures)")
    migrate.upgrade(settings)
    python = quix_python(args.quix_venv)
    ticks = make_ticks(args.rows, symbols=20)
    variants = {args.per_message: ticks, 1: ticks[: args.single_rows]}  # ticks per message
    with_extras = {per: sum(t.extras is not None for t in rows) for per, rows in variants.items()}
    logs = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    schema = f"bench_quix_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(peer_table, settings, schema)
    results: dict[str, list[Sample]] = {}

    def add(path: str, sample: Sample) -> None:
        results.setdefault(path, []).append(sample)

    try:
        n, batch = len(ticks), args.batch_rows
        for round_ in range(args.repeat):
            add("copy", await _timed(settings, n, lambda: raw_copy(settings, ticks)))
            add("many", await _timed(settings, n, lambda: executemany_upsert(settings, ticks)))
            add("writer", await _timed(settings, n, lambda: writer_only(settings, ticks, batch)))
            for per_message, rows in variants.items():
                prefix = f"bench-{uuid.uuid4().hex[:8]}."
                run = settings.model_copy(update={"topic_prefix": prefix,
                                                  "sink_group": f"{prefix}sink"})  # fmt: skip
                await ensure_topics(run, run.topics.all())
                messages = tick_messages(rows, per_message)
                await publish(run, run.topics.ticks, messages)
                backlog = Backlog(run, len(rows), len(messages), per_message)
                # Alternated, so that neither always runs on the warmer (or busier) machine.
                for who in ("mdp", "quix") if round_ % 2 == 0 else ("quix", "mdp"):
                    if who == "mdp":
                        sample = await mdp_sink(backlog, logs / "sink.log")
                    else:
                        sample = await quix_sink(
                            backlog, python, schema, args.quix_commit_s, logs / "quix.log"
                        )
                    add(f"{who}{per_message}", sample)
    except BaseException:
        print(f"logs in {logs}", file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(_truncate, settings)
        with psycopg.connect(settings.database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return render(args, settings, results, with_extras)


def render(
    args: argparse.Namespace, settings: Settings, results: dict[str, list[Sample]],
    with_extras: dict[int, int],
) -> str:  # fmt: skip
    copy = results["copy"]

    def ratios(samples: Sequence[Sample], steady: bool = False) -> str:
        pairs = zip(samples, copy, strict=True)
        return spread([ratio(s.steady if steady else s.rate, c.rate) for s, c in pairs], 1, 2, "x")

    names = {
        "copy": "raw binary COPY into market_data_ticks (baseline)",
        "many": "executemany INSERT … ON CONFLICT",
        "writer": f"BatchWriter alone ({args.batch_rows:,}-row transactions)",
    }
    for per in with_extras:
        label = f"{per} tick{'s' if per > 1 else ''} a message"
        names[f"mdp{per}"] = f"`mdp sink`, Kafka → rows, {label}"
        names[f"quix{per}"] = f"Quix Streams PostgreSQLSink, Kafka → rows, {label} (peer)"
    lines = []
    for key, name in names.items():
        samples = results[key]
        process = key.startswith(("mdp", "quix"))
        steady = ([spread([s.steady for s in samples], 1000, unit="k"), ratios(samples, True)]
                  if process else ["", ""])  # fmt: skip
        rss = spread([s.rss_kib for s in samples], 1024, 0) + " MiB" if process else ""
        extras = ""
        if process:
            per = int(key.removeprefix("mdp").removeprefix("quix"))
            extras = (
                f"{spread([float(s.extras) for s in samples], digits=0)} of {with_extras[per]:,}"
            )
        lines.append(
            f"| {name} | {samples[0].rows:,} | {spread([s.rate for s in samples], 1000, unit='k')}"
            f" | {ratios(samples)} | {steady[0]} | {steady[1]}"
            f" | {spread([s.cpu for s in samples], digits=2)}"
            f" | {spread([s.cpu_whole for s in samples], digits=2)}"
            f" | {spread([s.machine for s in samples], digits=2)} | {rss} | {extras} |"
        )
    versus = []
    for per in with_extras:
        mdp, quix = results[f"mdp{per}"], results[f"quix{per}"]
        pairs = list(zip(mdp, quix, strict=True))
        versus.append(
            f"| {per} | {spread([ratio(m.rate, q.rate) for m, q in pairs], 1, 2, 'x')}"
            f" | {spread([ratio(m.steady, q.steady) for m, q in pairs], 1, 2, 'x')}"
            f" | {spread([ratio(m.cpu, q.cpu) for m, q in pairs], 1, 2, 'x')}"
            f" | {spread([ratio(m.cpu_whole, q.cpu_whole) for m, q in pairs], 1, 2, 'x')} |"
        )
    load = os.getloadavg()
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command_line('bench.sink')}`  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) at the end; "
            f"PostgreSQL {server_version(settings)} (plain, no TimescaleDB) and Kafka native on "
            f"the same machine; sink batch {settings.sink_batch_rows:,} rows / "
            f"{settings.sink_batch_ms} ms; peer {QUIX_REQUIREMENT}, committing (so writing) every "
            f"{args.quix_commit_s:g} s; {len(copy)} rounds, figures min / median / max over them.",
            "",
            "Same generated ticks (20 instruments, distinct trades, 1 in 5 with extras) for every "
            "path, its table truncated before each. Each round publishes the backlog to a fresh "
            "topic once; `mdp sink` and the peer (a Quix Streams application: JSON envelopes "
            "expanded to one row each, Quix's PostgreSQLSink with the table's key and ON "
            "CONFLICT DO NOTHING, into a copy of market_data_ticks in a schema of its own) then "
            "each consume it whole under groups of their own, in alternating order. Each is "
            "timed as a separate process from launch until its group has committed the last "
            "offset (rows are stored before), read from Kafka so that polling costs the "
            "database nothing; 'after the first commit' leaves out process start and the group "
            f"join (n/a when under {MIN_SPAN:.0%} of the messages or {MIN_SPAN_S:g} s were left "
            "after it), and the "
            "CPU columns are over that same span but for 'launch to last commit', start-up "
            "included. Own CPU: the path's process "
            "(this one for the first three); machine CPU: every process, PostgreSQL and Kafka "
            "included, so other load on the machine shows there. Ratios are of the same round.",
            "",
            "| path | rows | rows/s | vs raw COPY | after the first commit | vs raw COPY "
            "| own CPU-s / 100k rows | own, launch to last commit | machine CPU-s / 100k rows "
            "| peak RSS | rows with extras stored |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *lines,
            "",
            "`mdp sink` against the peer, same topic, same round:",
            "",
            "| ticks a message | rows/s | after the first commit | own CPU per row "
            "| own CPU per row, launch to last commit |",
            "| ---: | ---: | ---: | ---: | ---: |",
            *versus,
            "",
        ]
    )


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
    parser.add_argument("--repeat", type=int, default=3, help="rounds (at least 3 for figures)")
    parser.add_argument("--quix-venv", type=Path, default=Path(".mdp/quix-venv"),
                        help="the peer's virtualenv, made on first use")  # fmt: skip
    parser.add_argument("--quix-commit-s", type=float, default=5.0,
                        help="the peer's commit_interval: it writes what it gathered at each "
                             "commit, so this is its batch window (Quix's default)")  # fmt: skip
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
