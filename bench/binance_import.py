"""Importing Binance's public dumps: the reader alone, and file to rows end to end against raw
COPY of the same rows, in one run.

    .venv/bin/python -m bench.binance_import           # the full run; writes BENCHMARKS.md
    .venv/bin/python -m bench.binance_import --quick   # smoke run: small files, once, prints only
    .venv/bin/python -m bench.binance_import --reader-only --trades 1000000  # (a) alone, printed

Sized to finish in about 10 minutes on 2 cores, a day of trades is 500,000 rows by default, a
third of a busy BTCUSDT day; --trades 1500000 makes the realistic day and takes about three
times as long. The section says how long the run took.

Makes, in a temporary folder, a day of BTCUSDT spot trades and a year of 1m klines in the dumps'
format with their .CHECKSUM files (bench/vision_files.py). Then, --repeat times, in turn:
(a) the reader alone: a process of its own reads every file to encoded envelopes as the importer
does (``producers.binance.imports.read_encoded``: unzip, parse and check a block of columns with
pyarrow, build the records' JSON, the row path for what the columns do not vouch for), no
Kafka; and the lines alone (unzip and split) for scale;
(b) end to end: `mdp import binance-vision FOLDER` as its own process into fresh topics, with
`mdp process` and `mdp sink` running as processes of their own (fresh groups) into fresh tables
(a scratch schema shaped like the real tables), from the import's launch to the sink's last row
committed, with each process's CPU time, PostgreSQL's and Kafka's;
(c) the baseline: bench/sink.py's raw binary COPY of the same records into fresh tables of the
same shape.
Last, (d) memory: `mdp import binance-vision` into Kafka alone (nothing consuming), the day of
trades and a file of --memory-factor times its rows: the importer's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from bench.pipeline import Roles, running_roles
from bench.processor import cpu_seconds
from bench.report import benchmark_parser, command_line, write_section
from bench.sink import raw_copy, server_version
from bench.vision_files import kline_rows, write_klines, write_trades
from marketdata import migrate
from marketdata.kafka import admin_client, ensure_topics
from marketdata.records import Bar, Tick
from marketdata.settings import Settings
from producers.binance.imports import _State, read_encoded, read_pages
from producers.binance.vision import DumpReader, parse_name
from sinks.writer import BAR_COLUMNS, _bar_row

SECTION = "## Binance dump import (bench/binance_import.py)"
GOAL_READER: Final = 500_000
GOAL_RATIO: Final = 0.5
DAY: Final = date(2024, 9, 21)
YEAR: Final = 2024
SCRAPE_S: Final = 0.05
COPY_BARS: Final = sql.SQL("COPY market_data_ohlcv ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(name) for name, _ in BAR_COLUMNS)
)
Figures = dict[str, float]


@dataclass(frozen=True)
class Files:
    folder: Path  # what the import reads: the day of trades and the year of klines
    trades: Path
    klines: list[Path]
    big: Path  # the trades file times --memory-factor, in a folder of its own
    warm: Path  # a few trades of the day before, in a folder of its own (the roles' warm-up)
    trade_rows: int
    kline_rows: int
    big_rows: int
    warm_rows: int
    seconds: float  # to make them
    megabytes: float  # zipped, what the import reads

    @property
    def rows(self) -> int:
        return self.trade_rows + self.kline_rows


def make_files(root: Path, args: argparse.Namespace) -> Files:
    started = time.perf_counter()
    folder, big, warm = root / "import", root / "big", root / "warm"
    for path in (folder, big, warm):
        path.mkdir()
    trades = write_trades(folder, DAY, args.trades)
    klines = write_klines(folder, YEAR, args.kline_months)
    # --reader-only reads neither the larger file nor the warm-up one: they are made empty.
    big_rows = 0 if args.reader_only else args.trades * args.memory_factor
    warm_rows = 0 if args.reader_only else max(100, args.trades // 1000)
    big_file = write_trades(big, DAY, big_rows)
    # Ids and times of their own: the processors' dedupe window must not drop the day's trades.
    warm_file = write_trades(warm, date(2024, 9, 20), warm_rows, seed=20, first_id=1)
    return Files(folder, trades, klines, big_file, warm_file, args.trades,
                 kline_rows(YEAR, args.kline_months), big_rows, warm_rows,
                 time.perf_counter() - started,
                 sum(path.stat().st_size for path in [trades, *klines]) / 1e6)  # fmt: skip


# -- (a) the reader, in a process of its own ------------------------------------------------------


def read_files(groups: dict[str, list[str]]) -> dict[str, Figures]:
    """In the reader process: for each group of files, wall and CPU seconds to read their lines,
    then to read them to records; and the process's peak RSS."""
    figures: dict[str, Figures] = {}
    for group, names in groups.items():
        paths = [Path(name) for name in names]
        wall, cpu, lines = time.perf_counter(), time.process_time(), 0
        for path in paths:
            with DumpReader(path) as reader:
                lines += sum(1 for _ in reader.lines())
        lines_s, lines_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu, rows, rejected = time.perf_counter(), time.process_time(), 0, 0
        for path in paths:
            for page in read_encoded(path, parse_name(path), _State()):
                rows += page.count + len(page.rejected)
                rejected += len(page.rejected)
        figures[group] = {"lines": lines, "lines_s": lines_s, "lines_cpu": lines_cpu,
                          "rows": rows, "rejected": rejected, "seconds": time.perf_counter() - wall,
                          "cpu": time.process_time() - cpu}  # fmt: skip
    figures["process"] = {"rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    return figures


async def run_reader(files: Files) -> dict[str, Figures]:
    groups = {"trades": [str(files.trades)], "klines": [str(path) for path in files.klines]}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.binance_import", "--read", json.dumps(groups),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the reader process exited with status {process.returncode}")
    result: dict[str, Figures] = json.loads(out)
    for group, rows in (("trades", files.trade_rows), ("klines", files.kline_rows)):
        if result[group]["rows"] != rows or result[group]["rejected"]:
            raise RuntimeError(f"the reader read {result[group]} from {rows:,} {group} rows")
    return result


# -- (b) end to end and (c) raw COPY, each into tables of its own ---------------------------------


@contextlib.asynccontextmanager
async def scratch_tables(settings: Settings) -> AsyncIterator[Settings]:
    """``settings`` with a database URL whose search path finds, first, empty copies of the
    market-data tables (columns, defaults, keys, indexes) in a schema dropped on the way out."""
    schema = sql.Identifier(f"bench_{uuid.uuid4().hex[:8]}")
    joiner = "&" if "?" in settings.database else "?"
    path = f"{schema.as_string(None)},public".replace(",", "%2C")
    url = f"{settings.database}{joiner}options=-csearch_path%3D{path}"
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        try:
            for table in ("market_data_ticks", "market_data_ohlcv"):
                like = "CREATE TABLE {}.{} (LIKE {} INCLUDING ALL)"
                name = sql.Identifier(table)
                conn.execute(sql.SQL(like).format(schema, name, name))
            yield settings.model_copy(update={"database_url": url})
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


def stored_rows(settings: Settings) -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM market_data_ticks)"
            " + (SELECT count(*) FROM market_data_ohlcv)"
        ).fetchone()
    return int(row[0]) if row else 0


def load_records(files: Files) -> tuple[list[Tick], list[Bar]]:
    """Every record of the import's files, as the reader makes them, for the COPY baseline."""
    ticks: list[Tick] = []
    bars: list[Bar] = []
    for path in [files.trades, *files.klines]:
        for page in read_pages(path, parse_name(path), _State()):
            for record in page.records:
                if isinstance(record, Tick):
                    ticks.append(record)
                else:
                    bars.append(record)
    return ticks, bars


async def copy_baseline(settings: Settings, ticks: Sequence[Tick], bars: Sequence[Bar]) -> float:
    """Seconds for raw binary COPY of ``ticks`` and ``bars`` into fresh tables."""
    async with scratch_tables(settings) as scratch:
        started = time.perf_counter()
        await raw_copy(scratch, ticks)
        async with await psycopg.AsyncConnection.connect(scratch.database) as conn:
            async with conn.cursor() as cur, cur.copy(COPY_BARS) as copy:
                copy.set_types([kind for _, kind in BAR_COLUMNS])
                for bar in bars:
                    await copy.write_row(_bar_row(bar))
            await conn.commit()
        seconds = time.perf_counter() - started
        if (stored := await asyncio.to_thread(stored_rows, scratch)) != len(ticks) + len(bars):
            raise RuntimeError(f"COPY stored {stored:,} rows of {len(ticks) + len(bars):,}")
    return seconds


def importer(settings: Settings, paths: Sequence[Path], log: Path) -> subprocess.Popen[bytes]:
    """`mdp import binance-vision PATHS` with ``settings``, its output appended to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "mdp", "import", "binance-vision", *map(str, paths)],
            env={**os.environ, **settings.to_env()}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


def reap(process: subprocess.Popen[bytes], block: bool) -> Figures | None:
    """The importer's exit: its CPU seconds and peak RSS (KiB), or None while it runs; a
    failure raises. The peak is the kernel's high-water mark of the process's own memory
    (``VmHWM``), sampled while it runs: ``ru_maxrss`` would count this process's pages, which
    the child shares between fork and exec."""
    while True:
        _sample_peak(process.pid)
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid != 0:
            break
        if not block:
            return None
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"`mdp import binance-vision` exited with status {process.returncode}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "rss_kib": _PEAKS.pop(process.pid, 0.0)}


_PEAKS: dict[int, float] = {}


def _sample_peak(pid: int) -> None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            _PEAKS[pid] = max(_PEAKS.get(pid, 0.0), float(line.split()[1]))


def service_cpu() -> Figures:
    """CPU seconds so far of every PostgreSQL process and of the Kafka broker (Linux /proc)."""
    spent = {"postgres": 0.0, "kafka": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            if name == "java" and b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                spent["kafka"] += cpu_seconds(int(entry.name))
            elif name == "postgres":
                spent["postgres"] += cpu_seconds(int(entry.name))
    return spent


async def import_until_stored(
    roles: Roles, settings: Settings, paths: Sequence[Path], rows: int, log: Path
) -> Figures:
    """Launch the import of ``paths``; seconds until the sink has committed ``rows`` more rows,
    and the CPU seconds each process spent meanwhile (the importer's over its whole life)."""
    before, used, services = await roles.progress(None), roles.usage(), service_cpu()
    started = time.perf_counter()
    process = importer(settings, paths, log)
    exited: Figures | None = None
    seen: Figures = {}
    try:
        async with asyncio.timeout(120 + rows / 2_000):
            while (stored := (await roles.progress(None))[1] - before[1]) < rows:
                roles.check()
                if stored > 0:
                    seen.setdefault("first_row", time.perf_counter() - started)
                if exited is None and (exited := reap(process, block=False)):
                    seen["published"] = time.perf_counter() - started
                await asyncio.sleep(SCRAPE_S)
        seconds = time.perf_counter() - started
        now, services_now = roles.usage(), service_cpu()
        if exited is None:
            exited = await asyncio.to_thread(reap, process, True)
            seen["published"] = time.perf_counter() - started
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.to_thread(reap, process, True)
    assert exited is not None
    seen.setdefault("first_row", seconds)
    return {"seconds": seconds, **seen, "importer": exited["cpu"],
            "importer_rss": exited["rss_kib"],
            "processor": now[0] - used[0], "sink": now[1] - used[1],
            "postgres": services_now["postgres"] - services["postgres"],
            "kafka": services_now["kafka"] - services["kafka"]}  # fmt: skip


async def drop_topics(settings: Settings) -> None:
    with contextlib.suppress(Exception):
        async with admin_client(settings) as admin:
            mine = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
            await admin.delete_topics(mine)


async def end_to_end(settings: Settings, files: Files, logs: Path) -> Figures:
    """One run of (b) with fresh topics, groups and tables."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    async with scratch_tables(settings) as scratch:
        # Derived bars off: the import's own rows against raw COPY of the same rows (what bars
        # from trades cost the processor is bench/bars.py's figure).
        run = scratch.model_copy(update={"topic_prefix": prefix, "sink_group": f"{prefix}sink",
                                         "process_group": f"{prefix}process",
                                         "bars_enabled": False})  # fmt: skip
        await ensure_topics(run, run.topics.all())
        try:
            async with running_roles(run, logs) as roles:
                # The roles join their groups and fetch a first time here, outside the timing.
                warm = logs / "warm.log"
                await import_until_stored(roles, run, [files.warm], files.warm_rows, warm)
                figures = await import_until_stored(
                    roles, run, [files.folder], files.rows, logs / "import.log"
                )
            stored = await asyncio.to_thread(stored_rows, run)
            if stored != files.warm_rows + files.rows:
                raise RuntimeError(f"{stored:,} rows stored of {files.warm_rows + files.rows:,}")
        finally:
            await drop_topics(run)
            # The processor's local state (processors.app.faust_datadir), not imported: faust
            # would load into the reader process too.
            shutil.rmtree(run.state_dir / "faust" / run.process_group, ignore_errors=True)
    return figures


# -- (d) memory: the importer into Kafka alone ---------------------------------------------------


async def import_only(settings: Settings, path: Path, log: Path) -> Figures:
    run = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."})
    await ensure_topics(run, run.topics.all())
    try:
        started = time.perf_counter()
        exited = await asyncio.to_thread(reap, importer(run, [path], log), True)
        assert exited is not None
        return {"seconds": time.perf_counter() - started, **exited}
    finally:
        await drop_topics(run)


# -- the run and its report -----------------------------------------------------------------------


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    migrate.upgrade(settings)
    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench-binance-import-"))
    logs = root / "logs"
    logs.mkdir()
    try:
        files = make_files(root, args)
        print(f"files made in {files.seconds:.1f} s; logs in {logs}", file=sys.stderr)
        started = time.perf_counter()
        ticks, bars = load_records(files)
        print(f"records for COPY read in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        gc.freeze()  # kept for every COPY: not worth the collector's walks meanwhile
        readers, runs, copies = [], [], []
        for repeat in range(args.repeat):
            started = time.perf_counter()
            readers.append(await run_reader(files))
            # Logs of its own: the roles are found by the metrics address their log names.
            (run_logs := logs / f"run-{repeat + 1}").mkdir()
            runs.append(await end_to_end(settings, files, run_logs))
            copies.append(await copy_baseline(settings, ticks, bars))
            reading = sum(readers[-1][group]["seconds"] for group in ("trades", "klines"))
            print(f"run {repeat + 1} in {time.perf_counter() - started:.1f} s: reader "
                  f"{reading:.1f} s, end to end {runs[-1]['seconds']:.1f} s, COPY "
                  f"{copies[-1]:.1f} s", file=sys.stderr)  # fmt: skip
        del ticks, bars
        memory = [await import_only(settings, path, logs / "memory.log")
                  for path in (files.trades, files.big)]  # fmt: skip
        print(f"memory: imports of {memory[0]['seconds']:.1f} s and {memory[1]['seconds']:.1f} s",
              file=sys.stderr)  # fmt: skip
    except BaseException:
        print(f"logs in {logs}", file=sys.stderr)
        raise
    finally:
        remove_archives(root)
    return render(args, settings, files, readers=readers, runs=runs, copies=copies, memory=memory,
                  elapsed=time.perf_counter() - began)  # fmt: skip


def remove_archives(root: Path) -> None:
    """The generated files go (hundreds of MB); the roles' logs stay."""
    for path in root.rglob("*.zip*"):
        path.unlink()


def spread(values: Sequence[float], fmt: str = ",.1f", scale: float = 1.0) -> str:
    """min / median / max of one figure over the runs."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return " / ".join(f"{v * scale:{fmt}}" for v in (low, mid, high))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render(
    args: argparse.Namespace, settings: Settings, files: Files, *,
    readers: list[dict[str, Figures]], runs: list[Figures], copies: list[float],
    memory: list[Figures], elapsed: float,
) -> str:  # fmt: skip
    n, mb = files.rows, files.megabytes
    lines = [
        SECTION, "",
        f"Command: `{command_line('bench.binance_import')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; PostgreSQL "
        f"{server_version(settings)} (plain, no TimescaleDB) and Kafka native on the same machine; "
        f"{settings.topic_partitions} partitions; {_count(args.repeat, 'run')}, each measuring "
        "the reader, the pipeline and the COPY baseline in turn; figures are min / median / max "
        "over the runs; "
        f"the whole run took {elapsed / 60:.1f} minutes.",
        "",
        f"Files (bench/vision_files.py, made in {files.seconds:.0f} s): `{files.trades.name}`, "
        f"{files.trade_rows:,} spot trades (a day of BTCUSDT is 1-2 million), and "
        f"{_count(len(files.klines), 'month')} of 1m klines `BTCUSDT-1m-{YEAR}-MM.zip`, "
        f"{files.kline_rows:,} bars; {n:,} rows, {mb:.1f} MB zipped, in the dumps' format (no "
        "header, eight decimals, ms times, a price random walk), each with its `.CHECKSUM`.",
        "",
        "**Reader alone**: a process of its own reads the files to Kafka values as the importer "
        "does (`read_encoded`: unzip, pyarrow parses and checks a block of columns and builds "
        "the envelopes' JSON, rows it does not vouch for through the row path), no Kafka; "
        "lines alone = unzip and split only.",
        "",
        "| files | rows | rows/s | CPU µs a row (median) | lines alone, rows/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    lines += reader_table(readers)
    lines += [
        "",
        "**End to end**: `mdp import binance-vision FOLDER` (the day and the year in one command, "
        "checksums verified) as its own process → md.ticks.raw / md.bars.raw → `mdp process` → "
        "`mdp sink` → rows committed, fresh topics, groups and tables (a scratch schema shaped "
        "like the real tables) each run, the roles warmed up on a small file first; timed from "
        "the import's launch until the sink's /metrics count the last row, then the rows are "
        "counted, one per file row; derived bars off (their cost is bench/bars.py's). "
        "**Baseline**: bench/sink.py's raw binary COPY of the same "
        "records (read beforehand) into fresh tables of the same shape.",
        "",
        "| path | rows | seconds | rows/s | vs raw COPY |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| raw binary COPY (baseline) | {n:,} | {spread(copies, '.2f')} "
        f"| {spread([n / s for s in copies], scale=1e-3)}k | 1.00x |",
        f"| import → process → sink → committed rows | {n:,} "
        f"| {spread([r['seconds'] for r in runs], '.2f')} "
        f"| {spread([n / r['seconds'] for r in runs], scale=1e-3)}k "
        f"| {spread([c / r['seconds'] for c, r in zip(copies, runs, strict=True)], '.2f')}x |",
        "",
    ]  # fmt: skip
    ratio = statistics.median(c / r["seconds"] for c, r in zip(copies, runs, strict=True))
    lines += [
        "Seconds from the import's launch: the importer done (every record published and "
        f"acknowledged) {spread([r['published'] for r in runs], '.2f')}; the first row "
        f"committed {spread([r['first_row'] for r in runs], '.2f')}; the last "
        f"{spread([r['seconds'] for r in runs], '.2f')}.",
        "",
        f"Goal, end to end at least {GOAL_RATIO}x raw COPY: {_met(ratio >= GOAL_RATIO)} "
        f"({ratio:.2f}x, median).",
        "",
        "CPU seconds per 100k rows, end to end (the importer over its whole life, start-up "
        "included; PostgreSQL = all its processes; Kafka = the broker):",
        "",
        "| importer | processor | sink | PostgreSQL | Kafka | all |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = ("importer", "processor", "sink", "postgres", "kafka")
    per = {name: [r[name] / n * 100_000 for r in runs] for name in names}
    total = [sum(r[name] for name in names) / n * 100_000 for r in runs]
    lines.append("| " + " | ".join(spread(per[name], ".2f") for name in names)
                 + f" | {spread(total, '.2f')} |")  # fmt: skip
    small, big = memory
    lines += [
        "",
        "**Memory**: `mdp import binance-vision FILE` into Kafka alone (nothing consuming), "
        f"the day of trades and a file of {args.memory_factor}x its rows; peak RSS of the "
        "importer process.",
        "",
        "| file | rows | seconds | rows/s | CPU µs a row | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sizes = (("the day", files.trade_rows, small),
             (f"{args.memory_factor}x the day", files.big_rows, big))  # fmt: skip
    rss = statistics.median(r["importer_rss"] for r in runs) / 1024
    lines.append(f"| the day and the year, end to end above (median) | {n:,} | | | "
                 f"| {rss:.0f} MiB |")  # fmt: skip
    for label, rows, got in sizes:
        lines.append(f"| {label} | {rows:,} | {got['seconds']:.1f} "
                     f"| {rows / got['seconds'] / 1000:,.1f}k | {got['cpu'] / rows * 1e6:.1f} "
                     f"| {got['rss_kib'] / 1024:.0f} MiB |")  # fmt: skip
    growth = big["rss_kib"] / small["rss_kib"]
    verdict = "flat: streamed" if growth < 1.25 else "not flat"
    lines += ["", f"Peak RSS grew {growth:.2f}x for {args.memory_factor}x the rows ({verdict}).",
              ""]  # fmt: skip
    return "\n".join(lines)


def reader_table(readers: list[dict[str, Figures]]) -> list[str]:
    """The reader's rows (after the table's header) and the goal's line."""
    lines: list[str] = []
    for group in ("trades", "klines"):
        figures = [reader[group] for reader in readers]
        rates = [f["rows"] / f["seconds"] for f in figures]
        cpu = statistics.median(f["cpu"] / f["rows"] for f in figures) * 1e6
        split = spread([f["lines"] / f["lines_s"] for f in figures], scale=1e-3)
        lines.append(f"| {group} | {figures[0]['rows']:,} | {spread(rates, scale=1e-3)}k "
                     f"| {cpu:.2f} | {split}k |")  # fmt: skip
    both = ("trades", "klines")
    reader_rates = [sum(r[g]["rows"] for g in both) / sum(r[g]["seconds"] for g in both)
                    for r in readers]  # fmt: skip
    return [
        *lines,
        "",
        f"Goal, the reader at least {GOAL_READER // 1000}k rows/s: "
        f"{_met(statistics.median(reader_rates) >= GOAL_READER)} "
        f"({statistics.median(reader_rates) / 1000:,.1f}k over both, median).",
    ]


async def reader_only(args: argparse.Namespace) -> str:
    """The files, then the reader alone ``--repeat`` times: no Kafka, no database."""
    root = Path(tempfile.mkdtemp(prefix="bench-binance-reader-"))
    try:
        files = make_files(root, args)
        readers = [await run_reader(files) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return "\n".join([
        f"Reader alone, {_count(args.repeat, 'run')} (min / median / max); "
        f"load average {os.getloadavg()[0]:.2f} at the end, nproc {os.cpu_count()}",
        "",
        "| files | rows | rows/s | CPU µs a row (median) | lines alone, rows/s |",
        "| --- | ---: | ---: | ---: | ---: |",
        *reader_table(readers),
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--trades", type=int, default=500_000, help="rows in the day of trades")
    parser.add_argument("--kline-months", type=int, default=12, help="months of 1m klines")
    parser.add_argument("--memory-factor", type=int, default=4, help="the larger file, x the day")
    parser.add_argument("--repeat", type=int, default=3, help="runs (min / median / max)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20k trades, 1 month, once; printed only")  # fmt: skip
    parser.add_argument("--reader-only", action="store_true",
                        help="the reader alone (a), no Kafka nor database; printed")  # fmt: skip
    parser.add_argument("--read", help=argparse.SUPPRESS)  # a reader process's files
    args = parser.parse_args(argv)
    if args.read:
        print(json.dumps(read_files(json.loads(args.read))))
        return
    if args.reader_only:
        if args.quick:
            args.trades, args.kline_months, args.repeat = 20_000, 1, 1
        print(asyncio.run(reader_only(args)))
        return
    if args.quick:
        args.trades, args.kline_months, args.repeat = 20_000, 1, 1
    # Stopped by SIGTERM too, the run unwinds as on Ctrl-C and stops the processes it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    section = asyncio.run(measure(args, Settings.from_env()))
    print(section)
    if args.quick:
        print(f"(--quick: a smoke run, not written to {args.output})")
    else:
        write_section(args.output, SECTION, section)


if __name__ == "__main__":
    main()
