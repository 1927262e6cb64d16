"""End to end with every role a process of its own: sustained ticks/s and event-to-row latency.

    .venv/bin/python -m bench.pipeline

A load generator process publishes synthetic trade ticks to md.ticks.raw through the producers'
Publisher (per-instrument envelopes); `mdp process` and `mdp sink` run as their own processes,
with fresh topics and groups each run. Part 1 publishes --ticks as fast as the generator can and
times its first send to the last committed row. Part 2 offers --rate ticks/s for --rate-seconds,
each tick stamped with the time it was due, while this process polls the database for the rows.
Baselines in the same run: raw binary COPY of the same rows into a scratch table, and a bare
aiokafka produce → consume pipe. Then the real path through the same two roles (bench/sources.py):
the Binance sandbox venue streaming to `mdp produce binance`, --source-ticks as fast as the venue
goes, then at --rate for --rate-seconds while signed alerts go to `mdp webhook` at
--webhook-rate. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal

import aiohttp
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from bench.processor import cpu_seconds
from bench.producer_settings import kafka_version, percentile
from bench.report import benchmark_parser, command_line, run_benchmark
from bench.sink import raw_copy, server_version
from bench.sources import BINANCE, real_latency, venue_sustained
from bench.support import free_port, processor_process, sink_process, tick_messages
from marketdata import migrate
from marketdata.codec import decode
from marketdata.kafka import create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from producers.publisher import Publisher

SECTION = "## End to end (bench/pipeline.py)"
GOAL_RATE: Final = 30_000
# Issue #20: event->row p99 under 100 ms at 5k ticks/s, through every role.
GOAL_P99_S: Final = 0.1
PER_MESSAGE: Final = 100  # the Publisher's default envelope, as the producers run it
SCRAPE_S: Final = 0.05
POLL_S: Final = 0.02
PRICES: Final = [Decimal(10_000 + n).scaleb(-2) for n in range(997)]
SIZES: Final = [Decimal(n).scaleb(-3) for n in range(1, 8)]
# Plain conditions on the primary key's columns: one range scan per instrument, where a join
# against a list of instruments let the planner, misled by stale statistics, hash the run's rows.
NEWER_ROWS: Final = (
    "SELECT trade_id, timestamp FROM market_data_ticks"
    " WHERE exchange = %s AND symbol = ANY(%s) AND timestamp >= %s"
)
Figures = dict[str, float]


@dataclass(frozen=True)
class Plan:
    """What one generator process sends: ``publish`` as fast as it can through the Publisher,
    ``paced`` at ``rate`` ticks/s, ``raw`` pre-encoded envelopes of ``per_message`` to
    ``topic`` with a bare producer."""

    mode: Literal["publish", "paced", "raw"]
    exchange: str
    ticks: int
    symbols: int
    rate: float = 0.0
    topic: str = ""
    per_message: int = PER_MESSAGE


def make_tick(exchange: str, n: int, symbols: int, at: float) -> Tick:
    moment = datetime.fromtimestamp(at, UTC)
    return Tick(
        exchange=exchange, symbol=f"SYM{n % symbols}", timestamp=moment, source="bench.trade",
        trade_id=str(n), price=PRICES[n % len(PRICES)], size=SIZES[n % len(SIZES)],
        side="buy" if n % 2 else "sell", received_at=moment,
    )  # fmt: skip


async def generate(plan: Plan, settings: Settings) -> Figures:
    """In the generator process: wall times of the first send and the last acknowledgement, and
    the process's CPU seconds."""
    producer = create_producer(settings)
    await producer.start()
    try:
        publisher = Publisher(producer, settings.topics, stage="bench", max_records=PER_MESSAGE)
        if plan.mode == "raw":
            ticks = [make_tick(plan.exchange, n, plan.symbols, time.time())
                     for n in range(plan.ticks)]  # fmt: skip
            messages = tick_messages(ticks, plan.per_message)
            first = time.time()
            for key, value in messages:
                await producer.send(plan.topic, value, key=key)
        elif plan.mode == "publish":
            first = time.time()
            for start in range(0, plan.ticks, 1000):
                now = time.time()
                chunk = range(start, min(start + 1000, plan.ticks))
                await publisher.add(make_tick(plan.exchange, n, plan.symbols, now) for n in chunk)
        else:
            first, sent = time.time(), 0
            while sent < plan.ticks:
                due = min(plan.ticks, int((time.time() - first) * plan.rate) + 1)
                # Stamped with when each tick was due, so a generator running late shows up as
                # latency rather than as a lower offered rate.
                await publisher.add(make_tick(plan.exchange, n, plan.symbols, first + n / plan.rate)
                                    for n in range(sent, due))  # fmt: skip
                await publisher.flush()
                sent = due
                await asyncio.sleep(settings.producer_flush_ms / 1000)  # a round each time cap
        await publisher.flush(wait=True)
        await producer.flush()
        return {"first": first, "acked": time.time(), "cpu": time.process_time()}
    finally:
        await producer.stop()


async def run_generator(plan: Plan, settings: Settings) -> Figures:
    """``generate`` in a process of its own, as a producer runs."""
    env = {**os.environ, "MDP_TOPIC_PREFIX": settings.topic_prefix,
           "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pipeline", "--generate", json.dumps(asdict(plan)),
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode:
        raise RuntimeError(f"the generator exited with status {process.returncode}")
    result: Figures = json.loads(out)
    return result


class Roles:
    """`mdp process` and `mdp sink` as processes, their progress read from their /metrics."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.logs = logs
        port = free_port()
        self.processor_url = f"http://{settings.metrics_host}:{port}/metrics"
        self.processor = processor_process(settings, logs / "process.log", web_port=port)
        self.sink = sink_process(settings, logs / "sink.log")
        self.sink_url = ""
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def started(self, within: float = 90.0) -> None:
        async with asyncio.timeout(within):
            # sink_process asks for an ephemeral metrics port, which the sink logs.
            pattern = re.compile(r"metrics on (http://\S+/metrics)")
            while not (found := pattern.search((self.logs / "sink.log").read_text())):
                self.check()
                await asyncio.sleep(0.1)
            self.sink_url = found.group(1)
            while True:
                self.check()
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    await self.progress()
                    return
                await asyncio.sleep(0.2)

    async def _scrape(self, url: str) -> dict[str, float]:
        """Each sample's value, summed over its labels; and per table or kind as ``name:label``."""
        async with self.http.get(url) as response:
            text = await response.text()
        totals: dict[str, float] = {}
        for sample in (s for f in text_string_to_metric_families(text) for s in f.samples):
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if label := sample.labels.get("table") or sample.labels.get("kind"):
                key = f"{sample.name}:{label}"
                totals[key] = totals.get(key, 0.0) + sample.value
        return totals

    async def progress(self, table: str | None = "market_data_ticks") -> tuple[float, float, float]:
        """Since each started: ticks the processor emitted (not bars), rows the sink committed
        to ``table`` (by default tick rows, not the bars it derives from trades; None: every
        table), and raw messages the processor took."""
        processor, sink = await self._scrape(self.processor_url), await self._scrape(self.sink_url)
        rows = "mdp_sink_rows_written_total" + (f":{table}" if table else "")
        return (processor.get("mdp_process_records_out_total:tick", 0.0),
                sink.get(rows, 0.0),
                processor.get("mdp_process_messages_in_total", 0.0))  # fmt: skip

    def usage(self) -> tuple[float, ...]:
        """CPU seconds so far: the processor's, the sink's, the machine's busy and in all."""
        jiffies = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
        busy, total = sum(jiffies) - jiffies[3] - jiffies[4], sum(jiffies)
        hertz = os.sysconf("SC_CLK_TCK")
        return (cpu_seconds(self.processor.pid), cpu_seconds(self.sink.pid),
                busy / hertz, total / hertz)  # fmt: skip

    def check(self) -> None:
        for name, process in (("process", self.processor), ("sink", self.sink)):
            if process.poll() is not None:
                raise RuntimeError(f"`mdp {name}` exited early; see {self.logs / name}.log")

    async def stop(self) -> None:
        await self.http.close()
        for process in (self.processor, self.sink):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.processor, self.sink):
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def running_roles(settings: Settings, logs: Path) -> AsyncIterator[Roles]:
    roles = Roles(settings, logs)
    try:
        await roles.started()
        yield roles
    finally:
        await roles.stop()


def cores(before: Sequence[float], after: Sequence[float], seconds: float) -> Figures:
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return {"processor": spent[0] / seconds, "sink": spent[1] / seconds,
            "machine": spent[2] / spent[3] * (os.cpu_count() or 1)}  # fmt: skip


def count_exchange(settings: Settings, exchange: str) -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM market_data_ticks WHERE exchange = %s", [exchange]
        ).fetchone()
    return int(row[0]) if row else 0


async def sustained(roles: Roles, settings: Settings, plan: Plan) -> Figures:
    """Part 1: seconds from the first send until the sink has committed every row; when each
    stage put out its first and its last tick; the cores each role used meanwhile."""
    before, used = await roles.progress(), roles.usage()
    generator = asyncio.create_task(run_generator(plan, settings))
    seen: dict[str, float] = {}
    try:
        async with asyncio.timeout(120 + plan.ticks / 1000):
            while "stored" not in seen:
                roles.check()
                if generator.done() and generator.exception():
                    generator.result()
                emitted, rows, _ = await roles.progress()
                now = time.time()
                for name, done in (("emitted", emitted - before[0]), ("rows", rows - before[1])):
                    if done > 0:
                        seen.setdefault(f"first {name}", now)
                    if done >= plan.ticks:
                        seen.setdefault("processed" if name == "emitted" else "stored", now)
                await asyncio.sleep(SCRAPE_S)
            sent = await generator
    finally:
        generator.cancel()
    stored = await asyncio.to_thread(count_exchange, settings, plan.exchange)
    if stored != plan.ticks:
        raise RuntimeError(f"{stored:,} rows stored for {plan.ticks:,} ticks published")
    times = {name: at - sent["first"] for name, at in seen.items()}
    elapsed = times["stored"]
    return {**times, "seconds": elapsed, "published": sent["acked"] - sent["first"],
            "generator": sent["cpu"] / elapsed, **cores(used, roles.usage(), elapsed)}  # fmt: skip


async def latencies(roles: Roles, settings: Settings, plan: Plan) -> tuple[list[float], Figures]:
    """Part 2: for each row, the time of the first poll that saw it minus its timestamp; and the
    mean poll period, raw messages and cores used. An instrument's rows become visible in
    timestamp order (one partition, written in order), so a poll asks only for rows at or after
    the oldest of the newest rows seen of each instrument."""
    symbols = [f"SYM{n}" for n in range(plan.symbols)]
    newest = [datetime.now(UTC)] * plan.symbols
    seen: dict[str, float] = {}  # trade id: when a poll first saw its row
    delays: list[float] = []
    polls = 0
    generator = asyncio.create_task(run_generator(plan, settings))
    pause = asyncio.create_task(longest_pause(roles, generator))
    try:
        async with await psycopg.AsyncConnection.connect(settings.database, autocommit=True) as db:
            started, used, before = time.time(), roles.usage(), await roles.progress()
            deadline = started + plan.ticks / plan.rate + 120
            while len(seen) < plan.ticks:
                roles.check()
                if generator.done() and generator.exception():
                    generator.result()
                if time.time() > deadline:
                    raise RuntimeError(f"{len(seen):,} of {plan.ticks:,} rows seen in time")
                visible = time.time()
                cursor = await db.execute(NEWER_ROWS, [plan.exchange, symbols, min(newest)])
                for trade_id, stamp in await cursor.fetchall():
                    if trade_id not in seen:
                        seen[trade_id] = visible
                        delays.append(visible - stamp.timestamp())
                        slot = int(trade_id) % plan.symbols
                        newest[slot] = max(newest[slot], stamp)
                polls += 1
                await asyncio.sleep(max(0.0, visible + POLL_S - time.time()))
        sent, longest = await generator, await pause
    finally:
        generator.cancel()
        pause.cancel()
    elapsed, after = time.time() - started, await roles.progress()
    messages, sending = after[2] - before[2], sent["acked"] - sent["first"]
    figures = {"period": elapsed / polls, "messages": messages / sending,
               "per_message": plan.ticks / max(messages, 1), "pause": longest}  # fmt: skip
    figures |= await stage_delays(settings, plan.exchange, seen)
    return delays, {**figures, "generator": sent["cpu"] / elapsed,
                    **cores(used, roles.usage(), elapsed)}  # fmt: skip


async def stage_delays(settings: Settings, exchange: str, seen: dict[str, float]) -> Figures:
    """Where each tick's time went, from the Kafka timestamp of the message that carried it (set
    when it was handed to the producer): the generator (due until handed to Kafka, its round
    and the Publisher's gathering), the processor (from there until its output was handed to
    Kafka: the raw topic's linger and fetch, faust's intake, the batch) and the sink (until a
    poll saw the row). p50 and p99 of each, in seconds."""
    handed: dict[str, dict[str, float]] = {settings.topics.ticks_raw: {},
                                           settings.topics.ticks: {}}  # fmt: skip
    due: dict[str, float] = {}
    for topic, at in handed.items():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            while fetched := await consumer.getmany(timeout_ms=1000):
                for record in (r for batch in fetched.values() for r in batch):
                    if record.value is None or not (record.key or b"").startswith(
                        exchange.encode()
                    ):
                        continue
                    for tick in decode(record.value).records:
                        if not isinstance(tick, Tick):
                            continue
                        at[tick.trade_id or ""] = record.timestamp / 1000
                        due[tick.trade_id or ""] = tick.timestamp.timestamp()
        finally:
            await consumer.stop()
    raw, out = handed.values()
    stages: dict[str, list[float]] = {"generator": [], "processor": [], "sink": []}
    for trade_id, visible in seen.items():
        if trade_id in raw and trade_id in out:
            stages["generator"].append(raw[trade_id] - due[trade_id])
            stages["processor"].append(out[trade_id] - raw[trade_id])
            stages["sink"].append(visible - out[trade_id])
    figures: Figures = {}
    for stage, values in stages.items():
        values.sort()
        figures[f"{stage} p50"] = percentile(values, 50) if values else float("nan")
        figures[f"{stage} p99"] = percentile(values, 99) if values else float("nan")
    return figures


async def longest_pause(roles: Roles, generator: asyncio.Task[Figures]) -> float:
    """The longest stretch, once it has started, in which the processor took no raw message
    while the generator was sending (at the offered rate one is always waiting)."""
    taken, since, longest = (await roles.progress())[2], 0.0, 0.0
    while not generator.done():
        await asyncio.sleep(0.1)
        now, count = time.time(), (await roles.progress())[2]
        if count > taken:
            taken, since = count, now
        longest = max(longest, now - since) if since else 0.0
    return longest


def envelopes(ticks: int, symbols: int, per_message: int) -> int:
    """How many messages ``tick_messages`` makes of ``ticks`` dealt round-robin to ``symbols``."""
    per, extra = divmod(ticks, symbols)
    return sum(-(-(per + (s < extra)) // per_message) for s in range(symbols))


async def bare_pipe(settings: Settings, plan: Plan) -> float:
    """Baseline: seconds from the generator's first bare send to the last message received by one
    consumer here, nothing decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    consumer.assign([TopicPartition(plan.topic, p) for p in range(settings.topic_partitions)])
    generator = asyncio.create_task(run_generator(plan, settings))
    try:
        expected, received = envelopes(plan.ticks, plan.symbols, plan.per_message), 0
        async with asyncio.timeout(120 + plan.ticks / 1000):
            while received < expected:
                if generator.done() and generator.exception():
                    generator.result()
                fetched = await consumer.getmany(timeout_ms=200)
                received += sum(len(batch) for batch in fetched.values())
            last = time.time()
            return last - (await generator)["first"]
    finally:
        generator.cancel()
        await consumer.stop()


async def scratch_copy(settings: Settings, ticks: Sequence[Tick]) -> float:
    """Baseline: seconds for bench.sink's raw binary COPY of ``ticks`` into a scratch table."""
    schema = sql.Identifier(f"bench_{uuid.uuid4().hex[:8]}")
    # raw_copy names market_data_ticks unqualified: a search_path puts the scratch table first.
    joiner = "&" if "?" in settings.database else "?"
    url = f"{settings.database}{joiner}options=-csearch_path%3D{schema.as_string(None)}"
    with psycopg.connect(settings.database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        try:
            like = "CREATE TABLE {}.market_data_ticks (LIKE market_data_ticks INCLUDING ALL)"
            conn.execute(sql.SQL(like).format(schema))
            started = time.perf_counter()
            await raw_copy(settings.model_copy(update={"database_url": url}), ticks)
            return time.perf_counter() - started
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    migrate.upgrade(settings)
    run_id = uuid.uuid4().hex[:8]
    prefix, exchange = f"bench-{run_id}.", f"BENCH-{run_id.upper()}"
    run = settings.model_copy(update={"topic_prefix": prefix, "process_group": f"{prefix}process",
                                      "sink_group": f"{prefix}sink"})  # fmt: skip
    pipes = {f"{prefix}pipe": PER_MESSAGE, f"{prefix}pipe1": 1}  # topic: ticks per message
    # Made first, so that their leaders are elected by the time the baselines use them.
    await ensure_topics(run, [*run.topics.all(), *pipes])
    logs = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    n, symbols = args.ticks, args.symbols
    try:
        ticks = [make_tick(exchange, i, symbols, time.time()) for i in range(n)]
        figures = {"copy": await scratch_copy(run, ticks)}
        del ticks
        for topic, per_message in pipes.items():
            plan = Plan("raw", exchange, n, symbols, topic=topic, per_message=per_message)
            figures[topic.removeprefix(prefix)] = await bare_pipe(run, plan)
        async with running_roles(run, logs) as roles:
            # The roles join their groups and fetch first here, outside the timed parts.
            await sustained(roles, run, Plan("publish", f"{exchange}-W", 10 * symbols, symbols))
            figures |= await sustained(roles, run, Plan("publish", f"{exchange}-T", n, symbols))
            offered = Plan("paced", f"{exchange}-L", int(args.rate * args.rate_seconds), symbols,
                           rate=args.rate)  # fmt: skip
            delays, latency = await latencies(roles, run, offered)
            # The real path, through the same roles: the sandbox venue and the producer, then
            # with the webhook under load beside them.
            real = await venue_sustained(roles, run, run_id, ticks=args.source_ticks,
                                         symbols=args.source_symbols, logs=logs)  # fmt: skip
            real_delays, real_lat = await real_latency(
                roles, run, run_id, rate=args.rate, seconds=args.rate_seconds,
                hook_rate=args.webhook_rate, symbols=args.source_symbols, logs=logs,
            )  # fmt: skip
    except BaseException:
        print(f"role logs in {logs}", file=sys.stderr)
        raise
    finally:
        with psycopg.connect(settings.database, autocommit=True) as conn:
            conn.execute("DELETE FROM market_data_ticks WHERE exchange LIKE %s", [f"{exchange}-%"])
            conn.execute("DELETE FROM market_data_ticks WHERE exchange = %s AND symbol LIKE %s",
                         [BINANCE, f"%X{run_id.upper()}USDT"])  # fmt: skip
            conn.execute("DELETE FROM market_data_ticks WHERE exchange = %s",
                         [f"HOOK-{run_id.upper()}"])  # fmt: skip
    return render(args, run, figures, delays, latency) + render_sources(
        args, figures, real, real_delays, real_lat
    )


def render_sources(
    args: argparse.Namespace, t: Figures, real: Figures, delays: dict[str, list[float]],
    lat: Figures,
) -> str:  # fmt: skip
    """The real path's tables, beside the generator's figures of the same run."""
    n, seconds = real["ticks"], real["seconds"]
    generator_rate = args.ticks / t["seconds"]
    rate = n / seconds
    hook = next(name for name in delays if name != BINANCE)
    rows = []
    for name, offered, values in (
        ("Binance sandbox venue → `mdp produce binance`", args.rate, delays[BINANCE]),
        ("signed alerts → `mdp webhook`", args.webhook_rate, delays[hook]),
    ):
        rows.append(
            f"| {name} | {offered:,.0f} | {len(values):,} | {percentile(values, 50) * 1000:,.0f}"
            f" | {percentile(values, 99) * 1000:,.0f} | {max(values) * 1000:,.0f} |"
        )
    return REAL_TEMPLATE.format(
        symbols=args.source_symbols, n=n, seconds=seconds, rate=rate / 1000,
        vs_generator=rate / generator_rate, vs_copy=t["copy"] * rate / args.ticks,
        sent=real["sent"], r=real, l=lat, rows="\n".join(rows), duration=args.rate_seconds,
        hook_rate=args.webhook_rate, hook_p50=lat["hook_p50"] * 1000,
        hook_p99=lat["hook_p99"] * 1000, poll=f"{POLL_S * 1000:g}",
    )  # fmt: skip


REAL_TEMPLATE: Final = """
**Real path**, in the same run through the same `mdp process` and `mdp sink`: the Binance \
sandbox venue (sandbox.binance, its own process on a port of the run's own) streams trades of \
{symbols} instruments to `mdp produce binance` in sandbox mode, which publishes them as it does \
live; the venue starts once the producer has subscribed. **Sustained**: {n:,} trades sent as \
fast as the venue goes (all sent in {sent:.2f} s), from its first send until the sink's \
/metrics count the last row committed.

| source | ticks | seconds | ticks/s | vs generator, sustained | vs raw COPY | venue cores \
| producer cores | processor cores | sink cores | machine cores |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| Binance sandbox venue → `mdp produce binance` | {n:,} | {seconds:.2f} | {rate:,.1f}k \
| {vs_generator:.2f}x | {vs_copy:.2f}x | {r[venue]:.2f} | {r[producer]:.2f} | {r[processor]:.2f} \
| {r[sink]:.2f} | {r[machine]:.2f} |

**Latency, real path**: the venue at the generator's offered rate and, at the same time, \
{hook_rate:,.0f} signed TradingView alerts/s posted to `mdp webhook` (a load process of its \
own, each alert stamped with the time it was due) for {duration:g} s; a trade's timestamp is \
when the venue sent it. The same poller (every {poll} ms) times each row from its timestamp \
(looking 5 s back for the webhook's rows: concurrent requests publish out of time order).

| source | offered/s | rows | p50 ms | p99 ms | max ms |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}

Alerts answered 2xx: {l[hook_ok]:,.0f} of {l[hook_count]:,.0f}, request p50 {hook_p50:.1f} ms, \
p99 {hook_p99:.1f} ms. Cores meanwhile: venue {l[venue]:.2f}, producer {l[producer]:.2f}, \
alert load {l[alerts]:.2f}, webhook {l[webhook]:.2f}, processor {l[processor]:.2f}, sink \
{l[sink]:.2f}, machine {l[machine]:.2f}.
"""


TEMPLATE: Final = """{section}

Command: `{command}` \x20
Date: {date:%Y-%m-%d %H:%M} UTC; nproc {nproc}; every role a process of its own beside Kafka \
{kafka} and PostgreSQL {postgres}; {s.topic_partitions} partitions; processor take \
{s.process_take_messages} messages / {s.process_batch_ms} ms, output batches of \
{s.process_batch_records}; sink batch {s.sink_batch_rows:,} rows / {s.sink_batch_ms} ms.

Trade ticks of {symbols} instruments with unique trade ids, made by a load generator process and \
published through the producers' `Publisher` (envelopes of up to {per} ticks of one instrument). \
**Sustained**: {ticks:,} ticks as fast as the generator goes, from its first send until the \
sink's /metrics (scraped every {scrape} ms) count the last row committed, after a warm-up in \
which both roles join their groups; the run's rows are then counted, exactly one per tick. \
Baselines on the same ticks: bench/sink.py's raw binary COPY into a scratch table; a bare \
aiokafka pipe, pre-encoded messages from the generator's producer to one consumer, not decoded.

| path | ticks | seconds | ticks/s | vs raw COPY |
| --- | ---: | ---: | ---: | ---: |
{paths}

Goal, at least {goal_rate}k ticks/s sustained end to end: {rate_met} ({rate:,.1f}k).

| stage, sustained run | first tick out, s | last tick out, s | s after the stage before \
| ticks/s, first to last | CPU cores (of {nproc}) |
| --- | ---: | ---: | ---: | ---: | ---: |
{stages}
| whole machine, Kafka and PostgreSQL included | | | | | {t[machine]:.2f} |

{rate_limit}

**Latency** at {offered:,.0f} ticks/s offered for {duration:g} s ({count:,} ticks), the \
generator adding a round every {linger} ms to the producers' adaptive `Publisher`; a \
tick's timestamp is when it was due. A poller here asks the database every {poll} ms (mean \
period {lat[period]:.3f} s: the resolution, by which a figure may overstate) for each \
instrument's rows from the newest it has seen on, and takes the time of the first poll that \
returns a row minus the row's timestamp.

| offered ticks/s | ticks | p50 ms | p99 ms | max ms | raw messages/s | processor cores | sink \
cores | generator cores | machine cores |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| {offered:,.0f} | {count:,} | {p50:,.0f} | {p99:,.0f} | {worst:,.0f} | {lat[messages]:,.0f} \
| {lat[processor]:.2f} | {lat[sink]:.2f} | {lat[generator]:.2f} | {lat[machine]:.2f} |

Goal, p99 under {goal_p99_ms:g} ms at 5k ticks/s: {p99_met}. `mdp process` took \
{lat[messages]:,.0f} raw messages/s ({lat[per_message]:.1f} ticks each: {symbols} instruments, \
each sent at once when nothing of it is in flight; faust's cost is per message) with \
{lat[processor]:.2f} of a core, its \
intake stopping for up to {lat[pause]:.1f} s at a time with messages waiting; the sink used \
{lat[sink]:.2f} of a core. The processor and the sink take their input as soon as it runs \
dry ({s.process_batch_ms} ms and {s.sink_batch_ms} ms are caps under sustained load).

Where the time went, per tick, from the Kafka timestamp of each message that carried it (set \
when the message was handed to the producer): the generator (due until handed to Kafka: its \
{linger} ms round and the Publisher's gathering) p50 {g50:.0f} / p99 {g99:.0f} ms; the \
processor (until its output was handed to Kafka: the raw topic's linger and fetch, faust's \
intake, the buffer) p50 {p50s:.0f} / p99 {p99s:.0f} ms; the sink (until a poll saw the row) \
p50 {s50:.0f} / p99 {s99:.0f} ms.
"""


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _stages(t: Figures, ticks: int, nproc: int) -> tuple[str, str]:
    """The stage table's rows, and a sentence on the stage that added the most time: a stage
    slower than the one before it finishes well after it, with a backlog in front."""
    stages = {"generator: published and acknowledged": (0.0, t["published"], t["generator"]),
              "`mdp process`: emitted": (t["first emitted"], t["processed"], t["processor"]),
              "`mdp sink`: committed": (t["first rows"], t["stored"], t["sink"])}  # fmt: skip
    added = dict(zip(stages, [t["published"], t["processed"] - t["published"],
                              t["stored"] - t["processed"]], strict=True))  # fmt: skip
    rows = [f"| {name} | {first:.2f} | {last:.2f} | {added[name]:.2f} "
            f"| {ticks / max(last - first, SCRAPE_S) / 1000:,.1f}k | {cpu:.2f} |"
            for name, (first, last, cpu) in stages.items()]  # fmt: skip
    worst = max(added, key=lambda name: added[name])
    cpu, busy = stages[worst][2], t["machine"] / nproc
    text = (f"Most of the time was added by {worst.split(':')[0]}, {added[worst]:.2f} s after "
            f"the stage before it, with {cpu:.2f} of a core (each role is one Python "
            "thread")  # fmt: skip
    if cpu < 0.6:
        text += ", so it waited, on fetches, batching windows or commits, more than it computed"
    text += f"); the machine's cores were {busy:.0%} busy"
    if busy >= 0.9:
        text += ", so the stages, Kafka and PostgreSQL also competed for CPU"
    return "\n".join(rows), text + "."


def render(
    args: argparse.Namespace, settings: Settings, t: Figures, delays: Sequence[float], lat: Figures
) -> str:
    n, nproc = args.ticks, os.cpu_count() or 1
    rate, p99 = n / t["seconds"], percentile(delays, 99)
    paths = [
        ("raw binary COPY into a scratch table (baseline)", t["copy"]),
        (f"bare aiokafka pipe, {PER_MESSAGE} ticks a message (baseline)", t["pipe"]),
        ("bare aiokafka pipe, 1 tick a message (baseline)", t["pipe1"]),
        ("pipeline: generator → `mdp process` → `mdp sink` → committed rows", t["seconds"]),
    ]
    stages, rate_limit = _stages(t, n, nproc)
    return TEMPLATE.format(
        section=SECTION, command=command_line("bench.pipeline"), date=datetime.now(UTC),
        nproc=nproc, kafka=kafka_version(settings).split()[0], postgres=server_version(settings),
        s=settings, symbols=args.symbols, per=PER_MESSAGE, ticks=n, scrape=f"{SCRAPE_S * 1000:g}",
        paths="\n".join(f"| {name} | {n:,} | {s:.2f} | {n / s / 1000:,.1f}k "
                        f"| {t['copy'] / s:.2f}x |" for name, s in paths),
        goal_rate=GOAL_RATE // 1000, rate_met=_met(rate >= GOAL_RATE), rate=rate / 1000, t=t,
        stages=stages, rate_limit=rate_limit, offered=args.rate, duration=args.rate_seconds,
        count=len(delays), linger=f"{settings.producer_flush_ms:g}", poll=f"{POLL_S * 1000:g}",
        lat=lat,
        p50=percentile(delays, 50) * 1000, p99=p99 * 1000, worst=max(delays) * 1000,
        goal_p99_ms=GOAL_P99_S * 1000, p99_met=_met(p99 < GOAL_P99_S),
        **{name: lat[f"{stage} p{q}"] * 1000 for name, stage, q in (
            ("g50", "generator", 50), ("g99", "generator", 99), ("p50s", "processor", 50),
            ("p99s", "processor", 99), ("s50", "sink", 50), ("s99", "sink", 99))},
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks, sustained run")
    parser.add_argument("--symbols", type=int, default=100, help="instruments")
    parser.add_argument("--rate", type=float, default=5_000, help="offered ticks/s, latency run")
    parser.add_argument("--rate-seconds", type=float, default=30, help="how long to offer it")
    parser.add_argument(
        "--source-ticks",
        type=int,
        default=200_000,
        help="trades the sandbox venue sends as fast as it goes, real path",
    )
    parser.add_argument(
        "--source-symbols", type=int, default=3, help="instruments of the sandbox venue, real path"
    )
    parser.add_argument("--webhook-rate", type=float, default=200,
                        help="signed alerts/s to `mdp webhook`, real path latency run")  # fmt: skip
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # a generator process's Plan
    args, _ = parser.parse_known_args(argv)
    if args.generate:
        plan = Plan(**json.loads(args.generate))
        print(json.dumps(asyncio.run(generate(plan, Settings.from_env()))))
        return
    # Stopped by SIGTERM too, the run unwinds as on Ctrl-C and stops the processes it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
