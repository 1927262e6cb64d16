"""Soak: every role for an hour at a steady rate; memory, CPU, lag, latency and log errors.

    .venv/bin/python -m bench.soak --minutes 60 --rate 5000 --out /work/soak-out

Not part of CI. A Kafka broker and a PostgreSQL server of the soak's own (`mdp services up` with
``--state-dir``, ``--kafka-port``, ``--postgres-port``; stopped again at the end unless
``--keep-services``) so that other work on the machine's shared services neither disturbs the run
nor is disturbed by it. The roles, each a process of its own with the soak's settings:

- the source: bench/pipeline.py's load generator (``--generate``, paced mode) offering ``--rate``
  trade ticks/s over ``--symbols`` instruments through the producers' Publisher, each tick
  stamped with the time it was due;
- a sandbox venue and its real producer: ``python -m sandbox.binance`` streaming generated trades
  (``--venue-rate`` a second per symbol, two symbols) to ``mdp produce binance``;
- ``mdp webhook`` taking ``--alert-rate`` signed TradingView alerts a second from this process;
- ``mdp process`` and ``mdp sink`` (bench/pipeline.py's Roles).

Every ``--every`` seconds this process samples each process's memory and CPU seconds from /proc
(Kafka's and PostgreSQL's included; PostgreSQL as the sum of its processes' proportional set
size, since its backends share their buffers), the processor's and the sink's consumer lag and
the rows the sink committed. A poller reads the generator's rows back from the database every
``POLL_S`` and takes, for each, the time it was first seen minus its timestamp (event -> row),
summarised per minute. At the end: each process's RSS at start and end, and its slope (least
squares, MiB/hour, after ``--warmup-minutes``); the largest lags; error lines in every log;
samples.csv, latency.csv, rss.svg and summary.md (the text for BENCHMARKS.md) in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

import aiohttp
import psycopg

from bench.pipeline import Plan, Roles, count_exchange, running_roles
from bench.processor import cpu_seconds
from bench.support import free_port
from marketdata import migrate
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from mdp.board import group_lag
from webhook.auth import sign

POLL_S: Final = 0.05
SECRET: Final = "soak-webhook-secret-0123456789"  # noqa: S105 - the soak signs its own alerts
VENUE_SYMBOLS: Final = "BTCUSDT,ETHUSDT"
# Lines that say something went wrong, whatever wrote them: Python's logging and tracebacks,
# Kafka's log4j levels, PostgreSQL's severities.
ERROR_LINE: Final = re.compile(
    r"\b(ERROR|CRITICAL|FATAL|PANIC)\b|Traceback \(most recent call last\)|"
    r"^\w*(Error|Exception)\b"
)
WARNING_LINE: Final = re.compile(r"\b(WARNING|WARN)\b")
NEWER_ROWS: Final = (
    "SELECT w.symbol, t.timestamp FROM unnest(%s::text[], %s::timestamptz[]) AS w(symbol, after)"
    " CROSS JOIN LATERAL (SELECT m.timestamp FROM market_data_ticks m WHERE m.exchange = %s"
    " AND m.symbol = w.symbol AND m.timestamp > w.after) AS t"
)
COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                  "#17becf", "#7f7f7f", "#bcbd22")  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """One sampling round: seconds since the start, each process's memory (MiB) and CPU seconds
    so far, both groups' lag (None when Kafka did not answer), rows the sink committed since it
    started, and the machine's 1-minute load."""

    at: float
    rss: Mapping[str, float]
    cpu: Mapping[str, float]
    lag_process: int | None
    lag_sink: int | None
    rows: float
    load: float


@dataclass(frozen=True)
class Memory:
    """One process's memory over a run: first and last sample, peak, slope after the warm-up."""

    start: float
    end: float
    peak: float
    slope: float  # MiB per hour


@dataclass
class Minute:
    """Event -> row delays of the rows whose timestamp fell in one minute of the run, counted
    by the millisecond: an hour at 5k ticks/s is 18M delays, too many to keep each (the poll
    period, tens of milliseconds, is the resolution anyway)."""

    counts: Counter[int] = field(default_factory=Counter)

    def add(self, delay_s: float) -> None:
        self.counts[round(delay_s * 1000)] += 1

    def rows(self) -> int:
        return self.counts.total()

    def percentile(self, q: float) -> float:
        """The smallest delay (ms) at or below which ``q`` percent of the rows fall."""
        rank, seen = q / 100 * self.rows(), 0
        for ms in sorted(self.counts):
            seen += self.counts[ms]
            if seen >= rank:
                return float(ms)
        raise ValueError("no rows in this minute")


# ---- pure parts (tests/unit/bench/test_soak.py) ----


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour; 0 for fewer than two
    distinct times."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread * 3600


def memory(samples: Sequence[Sample], name: str, warmup_s: float) -> Memory:
    """``name``'s memory over ``samples``; the slope from the samples after ``warmup_s`` (all of
    them when too few come after it to fit a line)."""
    points = [(s.at, s.rss[name]) for s in samples if name in s.rss]
    if not points:
        raise ValueError(f"no sample of {name}")
    late = [p for p in points if p[0] >= warmup_s]
    fitted = late if len(late) >= 3 else points
    return Memory(points[0][1], points[-1][1], max(y for _, y in points), slope_per_hour(fitted))


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ERROR_LINE.search(line)]


def error_kinds(errors: Sequence[str]) -> Counter[str]:
    """Error lines counted by what they say: from the level (or the traceback) on, with the
    numbers (times, pids, offsets) masked, so that one repeated complaint is one kind."""
    kinds: Counter[str] = Counter()
    for line in errors:
        found = ERROR_LINE.search(line)
        said = line[found.start() :] if found else line
        kinds[re.sub(r"\d+", "N", said.strip())[:120]] += 1
    return kinds


def warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if WARNING_LINE.search(line) and not ERROR_LINE.search(line)]  # fmt: skip


def cpu_per_100k(samples: Sequence[Sample], name: str, warmup_s: float) -> float | None:
    """CPU seconds ``name`` spent per 100k rows the sink committed, from the first sample after
    the warm-up to the last; None when no rows were committed meanwhile."""
    window = [s for s in samples if s.at >= warmup_s and name in s.cpu]
    if len(window) < 2 or window[-1].rows <= window[0].rows:
        return None
    return (window[-1].cpu[name] - window[0].cpu[name]) / (window[-1].rows - window[0].rows) * 1e5


def minute_figures(minutes: Mapping[int, Minute]) -> list[tuple[int, int, float, float]]:
    """(minute, rows, p50 ms, p99 ms) for each minute with rows, in order."""
    return [(m, minutes[m].rows(), minutes[m].percentile(50), minutes[m].percentile(99))
            for m in sorted(minutes) if minutes[m].rows()]  # fmt: skip


def samples_csv(samples: Sequence[Sample], names: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["seconds", *(f"rss_mib_{n}" for n in names), *(f"cpu_s_{n}" for n in names),
                     "lag_process", "lag_sink", "rows", "load1"])  # fmt: skip
    for s in samples:
        writer.writerow([f"{s.at:.1f}", *(_cell(s.rss.get(n)) for n in names),
                         *(_cell(s.cpu.get(n)) for n in names),
                         _cell(s.lag_process), _cell(s.lag_sink), f"{s.rows:.0f}",
                         f"{s.load:.2f}"])  # fmt: skip
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def rss_svg(samples: Sequence[Sample], names: Sequence[str], warmup_s: float) -> str:
    """A self-contained SVG: one panel per process, RSS (MiB) against minutes, each panel with
    its own vertical range (at least 20 MiB tall, so that noise does not look like growth), the
    warm-up shaded and the slope in the title."""
    columns, width, height, pad = 2, 480, 200, 44
    rows = -(-len(names) // columns)
    end = max((s.at for s in samples), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{columns * width}" '
             f'height="{rows * height + 30}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="8" y="18" font-size="14">RSS (MiB) of every process against minutes; '
             f"shaded: warm-up ({warmup_s / 60:g} min), not in the slope</text>"]  # fmt: skip
    for index, name in enumerate(names):
        points = [(s.at, s.rss[name]) for s in samples if name in s.rss]
        if not points:
            continue
        left, top = (index % columns) * width + pad, (index // columns) * height + 30 + 20
        w, h = width - pad - 16, height - 50
        low, high = min(y for _, y in points), max(y for _, y in points)
        middle, half = (low + high) / 2, max((high - low) / 2 * 1.1, 10.0)
        low, high = max(0.0, middle - half), middle + half
        line = " ".join(f"{left + x / end * w:.1f},{top + h - (y - low) / (high - low) * h:.1f}"
                        for x, y in points)  # fmt: skip
        figures = memory(samples, name, warmup_s)
        colour = COLOURS[index % len(COLOURS)]
        parts += [
            f'<text x="{left}" y="{top - 6}" font-size="12">{escape(name)}: {figures.start:.0f}'
            f" → {figures.end:.0f} MiB, slope {figures.slope:+.1f} MiB/h</text>",
            f'<rect x="{left}" y="{top}" width="{min(warmup_s, end) / end * w:.1f}" '
            f'height="{h}" fill="#eeeeee"/>',
            f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{high:.0f}</text>',
            f'<text x="{left - 4}" y="{top + h}" text-anchor="end">{low:.0f}</text>',
            f'<text x="{left}" y="{top + h + 14}">0</text>',
            f'<text x="{left + w}" y="{top + h + 14}" text-anchor="end">{end / 60:.0f} min</text>',
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{line}"/>',
        ]  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ---- the processes ----


def _proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS


def tree_usage(root: int) -> tuple[float, float]:
    """A server's processes together (PostgreSQL forks a backend per connection): memory as the
    sum of their proportional set sizes, each shared page counted once across them rather than
    once per process; CPU seconds of the live ones plus what the root reaped from those gone."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_proc_stat(int(entry.name))[1]), []).append(int(entry.name))
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        queue += children.get(pid, [])
    pss = cpu = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
            cpu += cpu_seconds(pid)
    reaped = _proc_stat(root)
    cpu += (int(reaped[13]) + int(reaped[14])) / os.sysconf("SC_CLK_TCK")
    return pss, cpu


class Processes:
    """Every process of the run by name, and a sample of their memory and CPU."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.trees: set[str] = set()

    def add(self, name: str, pid: int, *, tree: bool = False) -> None:
        self.pids[name] = pid
        if tree:
            self.trees.add(name)

    def usage(self) -> tuple[dict[str, float], dict[str, float]]:
        rss: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                if name in self.trees:
                    rss[name], cpu[name] = tree_usage(pid)
                else:
                    rss[name], cpu[name] = rss_mib(pid), cpu_seconds(pid)
        return rss, cpu


def _services(command: str, env: Mapping[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "mdp", "services", command],
                   env={**os.environ, **env}, check=True)  # fmt: skip


def _pid_file(path: Path) -> int:
    return int(path.read_text().split()[0])


def _start(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **env},
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Run:
    """What the concurrent parts of a run share."""

    started: float
    exchange: str
    symbols: list[str]
    minutes: dict[int, Minute] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    seen: int = 0
    alerts: dict[int, int] = field(default_factory=dict)  # HTTP status: count


async def sample_every(run: Run, roles: Roles, processes: Processes, settings: Settings,
                       every: float) -> None:  # fmt: skip
    while True:
        await sample_once(run, roles, processes, settings)
        await asyncio.sleep(every - (time.time() - run.started) % every)


async def sample_once(run: Run, roles: Roles, processes: Processes, settings: Settings) -> None:
    at = time.time() - run.started
    rss, cpu = processes.usage()
    topics = settings.topics
    lag_process = await group_lag(
        settings, settings.process_group, [topics.ticks_raw, topics.bars_raw]
    )
    lag_sink = await group_lag(settings, settings.sink_group, [topics.ticks, topics.bars])
    try:
        _, rows, _ = await roles.progress()
    except (aiohttp.ClientError, ValueError, TimeoutError):
        rows = run.samples[-1].rows if run.samples else 0.0
    load = os.getloadavg()[0]
    run.samples.append(Sample(at, rss, cpu, lag_process, lag_sink, rows, load))


async def poll_latency(run: Run, settings: Settings) -> None:
    """Each of the generator's rows, when first seen, minus its timestamp, kept by the minute of
    its timestamp. One instrument's rows become visible in timestamp order (one partition,
    written in order) and each tick has a timestamp of its own, so a poll asks only for rows
    newer than the newest seen of each instrument and nothing is kept per row."""
    newest = [datetime.fromtimestamp(run.started, UTC)] * len(run.symbols)
    slot = {symbol: n for n, symbol in enumerate(run.symbols)}
    async with await psycopg.AsyncConnection.connect(settings.database, autocommit=True) as db:
        while True:
            polled = time.time()
            cursor = await db.execute(NEWER_ROWS, [run.symbols, newest, run.exchange])
            for symbol, stamp in await cursor.fetchall():
                at = stamp.timestamp()
                minute = int((at - run.started) // 60)
                run.minutes.setdefault(minute, Minute()).add(polled - at)
                run.seen += 1
                n = slot[symbol]
                newest[n] = max(newest[n], stamp)
            await asyncio.sleep(max(0.0, polled + POLL_S - time.time()))


async def send_alerts(run: Run, url: str, rate: float, exchange: str) -> None:
    """Signed TradingView alerts at ``rate`` a second, each a distinct trade of now."""
    n = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            n += 1
            price = f"{100 + n % 997}.5"
            body = json.dumps({"ticker": "HOOK", "exchange": exchange, "price": price,
                               "volume": "0.1", "time": datetime.now(UTC).isoformat(),
                               "n": n}).encode()  # fmt: skip
            headers = {"X-Signature": "sha256=" + sign(body, SECRET.encode()),
                       "Content-Type": "text/plain"}  # fmt: skip
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            run.alerts[status] = run.alerts.get(status, 0) + 1
            await asyncio.sleep(1 / rate)


async def _wait_http(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.time() + within
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with status {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    await response.read()
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {within:g} s")


def _log_tail(path: Path, offset: int) -> str:
    """What was written to ``path`` from ``offset`` on (a service's log predates the run)."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


async def soak(args: argparse.Namespace) -> str:
    env = {"MDP_STATE_DIR": str(args.state_dir), "MDP_KAFKA_PORT": str(args.kafka_port),
           "MDP_POSTGRES_PORT": str(args.postgres_port),
           # Empty: the addresses follow from the ports above, whatever this shell exports.
           "KAFKA_BOOTSTRAP_SERVERS": "", "MARKET_DATA_DATABASE_URL": ""}  # fmt: skip
    await asyncio.to_thread(_services, "up", env)
    try:
        return await _soak(args, Settings.from_env({**os.environ, **env}))
    finally:
        if not args.keep_services:
            await asyncio.to_thread(_services, "down", env)


@dataclass(frozen=True)
class Outcome:
    """The generator's ticks, how many of them were stored, when its last one was sent (seconds
    into the run) and how long the backlog took to drain after that."""

    ticks: int
    stored: int
    ended: float
    drained: float


async def _soak(args: argparse.Namespace, base: Settings) -> str:
    migrate.upgrade(base)
    run_id = uuid.uuid4().hex[:8]
    prefix, exchange = f"soak-{run_id}.", f"SOAK-{run_id.upper()}"
    settings = base.model_copy(update={"topic_prefix": prefix, "process_group": f"{prefix}process",
                                       "sink_group": f"{prefix}sink"})  # fmt: skip
    await ensure_topics(settings, settings.topics.all())
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    service_logs = {"kafka": base.state_dir / "kafka" / "server.log",
                    "postgres": base.state_dir / "postgres" / "postgres.log"}  # fmt: skip
    offsets = {n: p.stat().st_size if p.exists() else 0 for n, p in service_logs.items()}
    processes = Processes()
    processes.add("kafka", _pid_file(base.state_dir / "kafka" / "kafka.pid"))
    processes.add("postgres", _pid_file(base.state_dir / "postgres" / "postgres.pid"), tree=True)
    processes.add("soak (this process)", os.getpid())
    run = Run(time.time(), exchange, [f"SYM{n}" for n in range(args.symbols)])
    extras: dict[str, subprocess.Popen[bytes]] = {}
    try:
        hook_url = await start_extras(args, settings, logs, extras)
        async with running_roles(settings, logs) as roles:
            processes.add("mdp process", roles.processor.pid)
            processes.add("mdp sink", roles.sink.pid)
            for name, process in extras.items():
                processes.add(name, process.pid)
            outcome = await load(args, settings, run, roles=roles, processes=processes,
                                 extras=extras, hook_url=hook_url)  # fmt: skip
    finally:
        for process in extras.values():
            _stop(process)
        # Written however the run ended: the samples of a run that failed are the evidence.
        texts = {p.stem: p.read_text(errors="replace") for p in sorted(logs.glob("*.log"))}
        texts |= {n: _log_tail(p, offsets[n]) for n, p in service_logs.items()}
        write_results(out, run, list(processes.pids), args.warmup_minutes * 60)
    summary = render(args, settings, run, names=list(processes.pids), texts=texts,
                     outcome=outcome)  # fmt: skip
    (out / "summary.md").write_text(summary)
    return summary


async def start_extras(args: argparse.Namespace, settings: Settings, logs: Path,
                       extras: dict[str, subprocess.Popen[bytes]]) -> str:  # fmt: skip
    """The sandbox venue with its producer and the webhook, as asked, into ``extras``; the
    webhook's URL (empty without it)."""
    child_env = settings.to_env()
    if args.venue_rate > 0:
        port = free_port()
        extras["sandbox venue"] = _start(
            ["sandbox.binance", "--port", str(port), "--rate", str(args.venue_rate)],
            {}, logs / "sandbox-binance.log")  # fmt: skip
        await _wait_http(f"http://127.0.0.1:{port}/api/v3/time", extras["sandbox venue"])
        extras["mdp produce binance"] = _start(
            ["mdp", "produce", "binance", "--symbols", VENUE_SYMBOLS, "--streams", "trade"],
            {**child_env, "BINANCE_API_BASE_URL": f"http://127.0.0.1:{port}",
             "BINANCE_STREAM_URL": f"ws://127.0.0.1:{port}",
             "MDP_PRODUCER_METRICS_PORT": "0"}, logs / "produce-binance.log")  # fmt: skip
    if args.alert_rate <= 0:
        return ""
    port = free_port()
    extras["mdp webhook"] = _start(
        ["mdp", "webhook"], {**child_env, "TRADINGVIEW_HMAC_SECRET": SECRET,
                             "MDP_WEBHOOK_PORT": str(port)}, logs / "webhook.log")  # fmt: skip
    await _wait_http(f"http://127.0.0.1:{port}/health", extras["mdp webhook"])
    return f"http://127.0.0.1:{port}/webhooks/tradingview"


async def load(args: argparse.Namespace, settings: Settings, run: Run, *, roles: Roles,
               processes: Processes, extras: Mapping[str, subprocess.Popen[bytes]],
               hook_url: str) -> Outcome:  # fmt: skip
    """The generator's run with the samplers beside it, then the drain."""
    ticks = int(args.rate * args.minutes * 60)
    plan = Plan("paced", run.exchange, ticks, args.symbols, rate=args.rate)
    logs = roles.logs
    generator = _start(["bench.pipeline", "--generate", json.dumps(asdict(plan))],
                       settings.to_env(), logs / "generator.log")  # fmt: skip
    processes.add("load generator", generator.pid)
    run.started = time.time()
    tasks = [asyncio.create_task(sample_every(run, roles, processes, settings, args.every)),
             asyncio.create_task(poll_latency(run, settings))]  # fmt: skip
    if hook_url:
        alerts = send_alerts(run, hook_url, args.alert_rate, f"{run.exchange}-HOOK")
        tasks.append(asyncio.create_task(alerts))
    try:
        while generator.poll() is None:
            roles.check()
            for name, process in extras.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early; see its log in {logs}")
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(1)
        if generator.returncode:
            raise RuntimeError(f"the generator exited with status {generator.returncode}")
        ended = time.time() - run.started
        # The backlog drains until the latency poller has seen every generated row (the venue
        # and the webhook go on sending, so the groups' lag need not reach 0), for at most
        # --drain-minutes; the rows are counted once after. Counting them every few seconds
        # instead scanned millions of rows each time, a load of its own on PostgreSQL.
        while run.seen < ticks and time.time() - run.started - ended < args.drain_minutes * 60:
            roles.check()
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(1)
        drained = time.time() - run.started - ended
        await sample_once(run, roles, processes, settings)
        stored = await asyncio.to_thread(count_exchange, settings, run.exchange)
        return Outcome(ticks, stored, ended, drained)
    finally:
        for task in tasks:
            task.cancel()
        _stop(generator)


def write_results(out: Path, run: Run, names: Sequence[str], warmup_s: float) -> None:
    (out / "samples.csv").write_text(samples_csv(run.samples, names))
    figures = minute_figures(run.minutes)
    (out / "latency.csv").write_text("minute,rows,p50_ms,p99_ms\n" + "".join(
        f"{m},{n},{p50:.1f},{p99:.1f}\n" for m, n, p50, p99 in figures))  # fmt: skip
    if run.samples:
        (out / "rss.svg").write_text(rss_svg(run.samples, names, warmup_s))


def render(args: argparse.Namespace, settings: Settings, run: Run, *, names: Sequence[str],
           texts: Mapping[str, str], outcome: Outcome) -> str:  # fmt: skip
    warmup_s = args.warmup_minutes * 60
    samples = run.samples
    lines = [
        f"Soak: {args.minutes:g} min at {args.rate:,.0f} ticks/s offered by the load generator "
        f"over {args.symbols} instruments"
        + (
            f", the sandbox Binance venue streaming {args.venue_rate:g} trades/s per symbol "
            f"({VENUE_SYMBOLS}) to `mdp produce binance`"
            if args.venue_rate > 0
            else ""
        )
        + (f", {args.alert_rate:g} signed alerts/s to `mdp webhook`" if args.alert_rate > 0 else "")
        + f"; `mdp process` and `mdp sink`; Kafka and PostgreSQL of the soak's own. "
        f"Sampled every {args.every:g} s; slopes fitted after a {args.warmup_minutes:g} min "
        f"warm-up. {settings.topic_partitions} partitions; processor take "
        f"{settings.process_take_messages} messages / {settings.process_batch_ms} ms; sink "
        f"batch {settings.sink_batch_rows:,} rows / {settings.sink_batch_ms} ms; producer flush "
        f"{settings.producer_flush_ms} ms.",
        "",
        f"Generator ticks: {outcome.ticks:,} offered, {outcome.stored:,} stored "
        f"({'every one' if outcome.stored == outcome.ticks else 'MISMATCH'}); the backlog "
        f"drained {outcome.drained:.0f} s after the generator's last send at "
        f"{outcome.ended / 60:.1f} min.",
        "",
        "| process | RSS start MiB | RSS end MiB | peak MiB | slope MiB/h | CPU-s per 100k rows |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        m = memory(samples, name, warmup_s)
        # The whole run, drain included: under a backlog the rows committed after the
        # warm-up lag the CPU spent on them, which would misprice each stage.
        cost = cpu_per_100k(samples, name, 0.0)
        lines.append(f"| {name} | {m.start:.0f} | {m.end:.0f} | {m.peak:.0f} | {m.slope:+.1f} "
                     f"| {'' if cost is None else f'{cost:.2f}'} |")  # fmt: skip
    lags = [(s.lag_process, s.lag_sink) for s in samples]
    process_lags = [a for a, _ in lags if a is not None]
    sink_lags = [b for _, b in lags if b is not None]
    loads = [s.load for s in samples]
    figures = minute_figures(run.minutes)
    full = [f for f in figures if 0 < f[0] < max(f[0] for f in figures)] or figures
    lines += [
        "",
        "CPU-s per 100k rows: each process's CPU seconds over the rows the sink committed "
        "(all sources), from the first sample to the last, after the drain (a process that "
        "ended before, the load generator, to its last sample). PostgreSQL's memory is the "
        "sum of its processes' PSS.",
        "",
        f"Lag (messages not yet committed), max: processor {max(process_lags, default=0):,}, "
        f"sink {max(sink_lags, default=0):,} (of {len(samples)} samples; "
        f"{sum(a is None for a, _ in lags)} unanswered).",
        "",
        f"Event -> row latency per minute (poll every {POLL_S * 1000:g} ms, which a figure may "
        f"overstate by; {run.seen:,} of {outcome.stored:,} rows seen): p50 "
        + _range([f[2] for f in full])
        + " ms, p99 "
        + _range([f[3] for f in full])
        + " ms "
        f"over {len(full)} full minutes.",
        "",
        f"Machine: nproc {os.cpu_count()}, 1-minute load mean {statistics.fmean(loads or [0]):.2f}"
        f", max {max(loads, default=0):.2f}.",
    ]
    if args.alert_rate > 0:
        alerts = ", ".join(f"{status or 'no answer'}: {count:,}"
                           for status, count in sorted(run.alerts.items()))  # fmt: skip
        lines += ["", f"Webhook alerts by HTTP status: {alerts}."]
    lines += [
        "",
        "| log | error lines | warning lines | commonest error lines (digits as N) |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, text in texts.items():
        errors, warnings = error_lines(text), warning_lines(text)
        kinds = "<br>".join(f"{count} x `{escape(kind)}`"
                            for kind, count in error_kinds(errors).most_common(3))  # fmt: skip
        lines.append(f"| {name} | {len(errors)} | {len(warnings)} | {kinds} |")
    return "\n".join(lines) + "\n"


def _range(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{min(values):,.0f} to {max(values):,.0f} (median {statistics.median(values):,.0f})"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=5_000, help="generator ticks/s")
    parser.add_argument("--out", type=Path, default=Path("soak-out"), help="results directory")
    parser.add_argument("--symbols", type=int, default=100, help="generator instruments")
    parser.add_argument(
        "--venue-rate",
        type=float,
        default=20,
        help="sandbox Binance trades/s per symbol (0: no venue)",
    )
    parser.add_argument(
        "--alert-rate", type=float, default=2, help="webhook alerts/s (0: no webhook)"
    )
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument(
        "--drain-minutes",
        type=float,
        default=10,
        help="how long the backlog may take to drain after the load",
    )
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="left out of the slopes (default: 5, or a quarter of a short run)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".mdp-soak"),
        help="the soak's own services' state (MDP_STATE_DIR)",
    )
    parser.add_argument("--kafka-port", type=int, default=19192)
    parser.add_argument("--postgres-port", type=int, default=15532)
    parser.add_argument(
        "--keep-services", action="store_true", help="leave the soak's services running at the end"
    )
    args = parser.parse_args(argv)
    if args.warmup_minutes is None:
        args.warmup_minutes = min(5.0, args.minutes / 4)
    if not math.isfinite(args.rate) or args.rate <= 0:
        parser.error("--rate must be positive")
    # Stopped by SIGTERM too, the run unwinds as on Ctrl-C and stops the processes it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
