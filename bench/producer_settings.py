"""Choose the Kafka producer's linger, batch size and compression by measurement.

Every grid variant sends the same pre-encoded tick messages with the same loop (``await send``
for each, then one ``flush``), so only the producer's configuration differs between rows. A raw
aiokafka producer with its defaults is measured in the same run as the baseline, because the
absolute figures move with whatever else shares the machine. Repeats are interleaved (each pass
runs every variant once, in a shuffled order) so that a burst of background load hits one
sample of several variants rather than every sample of one.

That tight loop only yields to the event loop when a partition's batch is full, so batches fill
whatever the linger; a producer fed by a websocket yields after every message. A check therefore
repeats the linger values with a loop that yields after every send. A last, low-rate pass
measures send-to-ack latency one message at a time: what the producer adds when the market is
quiet.

Run from the project root::

    .venv/bin/python -m bench.producer_settings --messages 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import os
import platform
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_zstd, lz4_encode
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from bench.report import command_line, write_section
from marketdata.codec import encode_ticks
from marketdata.kafka import PRODUCER_TUNING, admin_client, create_producer, ensure_topics
from marketdata.records import Side, Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key

SECTION: Final = "## Kafka producer settings (bench/producer_settings.py)"

Tuning = tuple[str | None, int, int]  # compression_type, linger_ms, max_batch_size
Messages = Sequence[tuple[bytes, bytes]]

EXCHANGE: Final = "BINANCE"
INSTRUMENTS: Final = 20
PARTITIONS: Final = 4
CODECS: Final[tuple[str | None, ...]] = (None, "lz4", *(("zstd",) if has_zstd() else ()))
LINGERS_MS: Final = (0, 5, 20)
BATCH_SIZES: Final = (16 * 1024, 256 * 1024)
# Variants within this fraction of the fastest count as equally fast: a few repeats on two shared
# cores do not resolve smaller differences, so the choice among them is made on other grounds.
TIE_TOLERANCE: Final = 0.05
# How much producer throughput a codec may cost and still be preferred for the bytes it saves in
# the broker's storage, its replication and every consumer's fetches: the producer is far from
# being the pipeline's bottleneck (design.md measures a faust worker at ~5-6k msgs/s), and
# localhost, where bytes cost nearly nothing, understates what compression is worth.
COMPRESSION_ALLOWANCE: Final = 0.15
# What the producer may add to a quiet market's tick: a few ms disappears in the jitter of an
# exchange feed over the internet, a couple of tens of ms starts to show next to it.
LATENCY_BUDGET_MS: Final = 10.0
# A hung broker must fail the run, not stall it: no single sample should come near this.
SAMPLE_TIMEOUT_S: Final = 180.0


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    name: str
    # None means a raw AIOKafkaProducer with aiokafka's defaults (the baseline); otherwise the
    # project factory with these overrides, so everything else is the factory's own tuning.
    # Pairs rather than a dict keep the variant hashable, so that it can key its samples.
    overrides: tuple[tuple[str, Any], ...] | None
    yielding: bool = False

    def setting(self, key: str) -> Any:
        if self.overrides is None:
            return None
        return dict(self.overrides).get(key, PRODUCER_TUNING.get(key))

    @property
    def tuning(self) -> Tuning:
        return (
            self.setting("compression_type"),
            self.setting("linger_ms"),
            self.setting("max_batch_size"),
        )

    def cells(self) -> str:
        if self.overrides is None:
            return "1, no | none | 0 | 16 KiB"
        idempotent = "yes" if self.setting("enable_idempotence") else "no"
        codec, linger, batch = self.tuning
        return f"{self.setting('acks')}, {idempotent} | {codec or 'none'} | {linger} | {kib(batch)}"


def kib(size: int) -> str:
    return f"{size // 1024} KiB"


def variant(codec: str | None, linger_ms: int, batch: int, *, yielding: bool = False) -> Variant:
    name = f"{codec or 'none'} / linger {linger_ms} / {kib(batch)}"
    overrides = (("compression_type", codec), ("linger_ms", linger_ms), ("max_batch_size", batch))
    return Variant(name + (", yielding loop" if yielding else ""), overrides, yielding)


BASELINE: Final = Variant("baseline: raw aiokafka defaults", None)
FACTORY: Final = Variant("factory: create_producer(settings)", ())
FACTORY_CODEC, FACTORY_LINGER, FACTORY_BATCH = FACTORY.tuning


def grid_variants() -> list[Variant]:
    """Baseline first, factory last; gzip only at the factory's linger and batch size."""
    grid = [BASELINE]
    grid += [variant(c, linger, b) for c in CODECS for linger in LINGERS_MS for b in BATCH_SIZES]
    # gzip is known to be the slowest codec; one row shows by how much, without tripling the grid.
    grid += [variant("gzip", FACTORY_LINGER, FACTORY_BATCH), FACTORY]
    return grid


def check_variants() -> list[Variant]:
    return [
        variant(codec, linger, FACTORY_BATCH, yielding=True)
        for codec in CODECS
        for linger in LINGERS_MS
    ]


def generate_messages(
    count: int, records_per_message: int, seed: int = 7
) -> list[tuple[bytes, bytes]]:
    """Realistic trade ticks, already keyed and encoded, so that timing covers only Kafka."""
    rng = random.Random(seed)
    symbols = [f"SYM{i}" for i in range(INSTRUMENTS)]
    # Prices spread over the magnitudes of a crypto venue, from sub-dollar coins to BTC.
    prices = [10 ** rng.uniform(-1, 4.8) for _ in symbols]
    trade_ids = [rng.randrange(10**8, 4 * 10**9) for _ in symbols]
    sides: tuple[Side, Side] = ("buy", "sell")
    clock = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    messages: list[tuple[bytes, bytes]] = []
    for index in range(count):
        slot = index % INSTRUMENTS
        records = []
        for _ in range(records_per_message):
            clock += timedelta(microseconds=rng.randrange(20, 400))
            prices[slot] *= 1 + rng.gauss(0, 0.0002)
            trade_ids[slot] += 1
            records.append(
                Tick(
                    exchange=EXCHANGE,
                    symbol=symbols[slot],
                    timestamp=clock,
                    source="binance",
                    trade_id=str(trade_ids[slot]),
                    price=Decimal(f"{prices[slot]:.{2 if prices[slot] >= 1 else 5}f}"),
                    size=Decimal(f"{rng.expovariate(4.0):.5f}"),
                    side=rng.choice(sides),
                    received_at=clock + timedelta(microseconds=rng.randrange(800, 5000)),
                )
            )
        messages.append((instrument_key(EXCHANGE, symbols[slot]), encode_ticks(records)))
    return messages


@contextlib.asynccontextmanager
async def started(variant: Variant, settings: Settings, topic: str) -> AsyncIterator[Any]:
    """A running producer that has already delivered one message to each partition of ``topic``.

    The warm-up takes the connection, the producer id, the topic's metadata and each fresh
    partition's first write (leader ready, log segment created) out of the timed region: left in,
    a partition still electing its leader costs a retry backoff of 100 ms or more, which swamps
    a short sample.
    """
    if variant.overrides is None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    else:
        producer = create_producer(settings, **dict(variant.overrides))
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        await asyncio.gather(
            *[await producer.send(topic, b"warm-up", partition=p) for p in partitions]
        )
        yield producer
    finally:
        await producer.stop()


async def time_throughput(
    variant: Variant, settings: Settings, topic: str, messages: Messages
) -> float:
    async with asyncio.timeout(SAMPLE_TIMEOUT_S), started(variant, settings, topic) as producer:
        futures: list[asyncio.Future[Any]] = []
        begin = time.perf_counter()
        for key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            if variant.yielding:
                await asyncio.sleep(0)
        await producer.flush()
        elapsed = time.perf_counter() - begin
    # A failed send completes fast, so a sample only counts if every message was acknowledged.
    failed = sum(1 for f in futures if not f.done() or f.exception() is not None)
    if failed:
        raise RuntimeError(f"{variant.name}: {failed} of {len(futures)} sends failed")
    return elapsed


async def time_latency(
    variant: Variant, settings: Settings, topic: str, messages: Messages, pause_s: float
) -> list[float]:
    samples: list[float] = []
    async with asyncio.timeout(SAMPLE_TIMEOUT_S), started(variant, settings, topic) as producer:
        for key, value in messages:
            begin = time.perf_counter()
            await (await producer.send(topic, value, key=key))
            samples.append((time.perf_counter() - begin) * 1000)
            await asyncio.sleep(pause_s)
    return samples


@dataclasses.dataclass(slots=True)
class Outcome:
    messages: int
    grid: dict[Variant, list[float]] = dataclasses.field(default_factory=dict)
    check: dict[Variant, list[float]] = dataclasses.field(default_factory=dict)
    latency: dict[Variant, list[float]] = dataclasses.field(default_factory=dict)
    # (codec, max_batch_size) -> how many times smaller a full batch is once aiokafka compresses it
    shrink: dict[tuple[str | None, int], float] = dataclasses.field(default_factory=dict)

    def rate(self, variant: Variant) -> float:
        seconds = self.grid.get(variant) or self.check[variant]
        return self.messages / statistics.median(seconds)

    def best(self, variant: Variant) -> float:
        return self.messages / min(self.grid.get(variant) or self.check[variant])

    def find(self, tuning: Tuning, *, yielding: bool = False) -> Variant | None:
        pool = self.check if yielding else self.grid
        return next((v for v in pool if v.overrides and v.tuning == tuning), None)

    def p50(self, tuning: Tuning) -> float | None:
        found = [
            s for v, s in self.latency.items() if v.overrides is not None and v.tuning == tuning
        ]
        return percentile(found[0], 50) if found else None

    def linger_delay(self, linger: int) -> float:
        """Quiet-time p50 at this linger, or the linger itself when the pass was skipped."""
        measured = self.p50((FACTORY_CODEC, linger, FACTORY_BATCH))
        return float(linger) if measured is None else measured

    def recommend(self) -> Tuning:
        """Linger from the yielding loop within the latency budget, then batch size, then codec.

        Linger first: it is what trades quiet-time latency against throughput under load, and
        only the yielding loop shows its effect. Among lingers within the budget, the fastest (or
        the least linger among near-equals). Then, at that linger, the batch size of the fastest
        variant in the tight loop; then, of the codecs within the compression allowance of the
        fastest at that linger and batch size, the one that stores the fewest bytes.
        """
        allowed = [x for x in LINGERS_MS if self.linger_delay(x) <= LATENCY_BUDGET_MS] or [0]
        by_linger = {
            x: max((self.rate(v) for v in self.check if v.setting("linger_ms") == x), default=0.0)
            for x in allowed
        }
        top = max(by_linger.values())
        linger = min(x for x, r in by_linger.items() if r >= top * (1 - TIE_TOLERANCE))
        at_linger = [v for v in self.grid if v.overrides and v != FACTORY and v.tuning[1] == linger]
        batch = max(at_linger, key=self.rate).tuning[2]
        codecs = [v for v in at_linger if v.tuning[2] == batch]
        fastest = max(self.rate(v) for v in codecs)
        affordable = [v for v in codecs if self.rate(v) >= fastest * (1 - COMPRESSION_ALLOWANCE)]
        return max(affordable, key=lambda v: (self.shrink[v.tuning[0], batch], self.rate(v))).tuning


def percentile(samples: Sequence[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


async def measure(args: argparse.Namespace, settings: Settings, messages: Messages) -> Outcome:
    out = Outcome(len(messages))
    out.shrink = {
        (codec, batch): shrink(messages, codec, batch)
        for codec in (*CODECS, "gzip")
        for batch in BATCH_SIZES
    }
    out.grid = {v: [] for v in grid_variants()}
    out.check = {v: [] for v in check_variants()}
    latency_runs = [BASELINE, *(variant(FACTORY_CODEC, x, FACTORY_BATCH) for x in LINGERS_MS)]
    samples = (len(out.grid) + len(out.check)) * args.repeat + len(latency_runs) + 1
    run_id = uuid.uuid4().hex[:12]
    topics = [f"bench.producer.{run_id}.{i}" for i in range(samples)]
    await ensure_topics(settings, topics, partitions=PARTITIONS)
    fresh = iter(topics)
    order = random.Random(args.messages)
    try:
        pool = {**out.grid, **out.check}
        for rep in range(args.repeat):
            for v in order.sample(list(pool), len(pool)):
                elapsed = await time_throughput(v, settings, next(fresh), messages)
                pool[v].append(elapsed)
                progress = f"{len(messages) / elapsed:>9,.0f} msgs/s"
                print(f"[{rep + 1}/{args.repeat}] {v.name:<44} {progress}", file=sys.stderr)
        if args.latency_messages:
            for v in latency_runs:
                await measure_latency(
                    out, v, settings=settings, topic=next(fresh), messages=messages, args=args
                )
            chosen = out.recommend()
            if out.p50(chosen) is None:
                await measure_latency(
                    out,
                    variant(*chosen),
                    settings=settings,
                    topic=next(fresh),
                    messages=messages,
                    args=args,
                )
    finally:
        async with admin_client(settings) as admin:
            await admin.delete_topics(topics)
    return out


async def measure_latency(
    out: Outcome,
    v: Variant,
    *,
    settings: Settings,
    topic: str,
    messages: Messages,
    args: argparse.Namespace,
) -> None:
    sample = messages[: args.latency_messages]
    out.latency[v] = ms = await time_latency(
        v, settings, topic, sample, args.latency_interval_ms / 1000
    )
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    print(f"latency {v.name:<44} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", file=sys.stderr)


def shrink(messages: Messages, codec: str | None, batch: int) -> float:
    """How many times smaller a full batch of these messages is once aiokafka compresses it.

    Built by aiokafka's own batch builder, so the codec runs at the level the producer uses and
    the figure is what the broker stores, replicates and serves.
    """
    codec_id = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec_id,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=batch,
    )
    for offset, (key, value) in enumerate(messages):
        if builder.append(offset, timestamp=None, key=key, value=value, headers=[]) is None:
            break
    raw: int = builder.size()
    return raw / len(builder.build())


def kafka_version(settings: Settings) -> str:
    # The broker does not report its version over the protocol; the local broker's log does.
    if settings.kafka_bootstrap == f"127.0.0.1:{settings.kafka_port}":
        with contextlib.suppress(OSError):
            log = (settings.state_dir / "kafka" / "server.log").read_text(errors="replace")
            if found := re.search(r"Kafka version: (\S+)", log):
                return f"{found.group(1)} (native KRaft, single node, `mdp services`)"
    return "version unknown (not the local `mdp services` broker)"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def k(rate: float) -> str:
    return f"{rate / 1000:,.1f}k"


def code(tuning: Tuning) -> str:
    codec, linger, batch = tuning
    return f"`compression_type={codec!r}, linger_ms={linger}, max_batch_size={kib(batch)}`"


def conclusion(out: Outcome, messages: Messages) -> str:
    chosen = out.recommend()
    codec, linger, batch = chosen
    tight = out.find(chosen)
    assert tight is not None  # recommend() picks from the grid
    yielding = out.find(chosen, yielding=True)
    p50 = out.p50(chosen)
    baseline = out.rate(BASELINE)
    lines = [
        f"Use {code(chosen)} (acks=all, idempotent): {k(out.rate(tight))} msgs/s in the tight "
        f"loop ({out.rate(tight) / baseline:.2f}x the raw acks=1 baseline)"
        + (f", {k(out.rate(yielding))} msgs/s in the yielding loop" if yielding else "")
        + (f", {p50:.2f} ms p50 send-to-ack when quiet." if p50 is not None else ".")
    ]
    # The yielding loop has no gzip rows; were gzip chosen, show the factory codec's curve.
    shown = codec if out.find((codec, linger, batch), yielding=True) else FACTORY_CODEC
    lingers = [out.find((shown, x, batch), yielding=True) for x in LINGERS_MS]
    if all(lingers):
        lines.append(
            f"Linger {'/'.join(map(str, LINGERS_MS))} ms ({shown or 'none'}): "
            f"{'/'.join(k(out.rate(v)) for v in lingers if v)} msgs/s in the yielding loop, "
            f"{'/'.join(f'{out.linger_delay(x):.1f}' for x in LINGERS_MS)} ms p50 when quiet; "
            f"the rule takes the best yielding rate within a {LATENCY_BUDGET_MS:g} ms p50 budget."
        )
    other = next(b for b in BATCH_SIZES if b != batch)
    smaller = out.find((codec, linger, other))
    level = inspect.signature(lz4_encode).parameters["level"].default
    codecs = [c for c in (*CODECS, "gzip") if out.find((c, linger, batch))]
    rates = "/".join(k(out.rate(v)) for c in codecs if (v := out.find((c, linger, batch))))
    shrinks = "/".join(f"{out.shrink[c, batch]:.1f}" for c in codecs)
    lines.append(
        (
            f"{kib(batch)} batches run {out.rate(tight) / out.rate(smaller):.2f}x {kib(other)} "
            f"ones. "
            if smaller
            else ""
        )
        + f"Codecs {'/'.join(c or 'none' for c in codecs)} at that linger and batch: {rates} "
        f"msgs/s, batches {shrinks}x smaller (aiokafka {metadata.version('aiokafka')} runs lz4 "
        f"at level {level}, LZ4HC); the rule takes the smallest within "
        f"{COMPRESSION_ALLOWANCE:.0%} of the fastest."
    )
    if chosen == FACTORY.tuning:
        lines.append("That is the current `PRODUCER_TUNING`: keep it.")
    else:
        fp50 = out.p50(FACTORY.tuning)
        lines.append(
            f"The current `PRODUCER_TUNING` ({code(FACTORY.tuning)}) measured "
            f"{k(out.rate(FACTORY))} msgs/s"
            + (f", {fp50:.2f} ms p50" if fp50 is not None else "")
            + ": not the best trade-off; the factory should change to the settings above."
        )
    return "  \n".join(lines)


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    args: argparse.Namespace
    settings: Settings
    started_at: datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    wall_s: float


def render(out: Outcome, messages: Messages, run: RunInfo) -> str:
    chosen = out.recommend()
    payload = sum(len(key) + len(value) for key, value in messages) / len(messages)

    def row(v: Variant, reference: float) -> str:
        name = f"**{v.name}**" if v.tuning == chosen and v != FACTORY else v.name
        median = out.rate(v)
        return (
            f"| {name} | {v.cells()} | {k(out.best(v))} | {k(median)} "
            f"| {median * payload / 1e6:.1f} | {median / reference:.2f}x |"
        )

    def header(reference: str) -> list[str]:
        return [
            "| variant | acks, idempotent | compression | linger ms | max batch | best msgs/s "
            f"| median msgs/s | median MB/s | median vs {reference} |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]

    first_check = next(iter(out.check))
    load = ["/".join(f"{x:.2f}" for x in pair) for pair in (run.load_before, run.load_after)]
    spreads = [max(s) / min(s) - 1 for s in (*out.grid.values(), *out.check.values())]
    lines = [
        SECTION,
        "",
        f"Command: `{command_line('bench.producer_settings')}`  ",
        f"Date: {run.started_at:%Y-%m-%d %H:%M} UTC ({run.wall_s:.0f} s wall time)  ",
        f"Machine: nproc {os.cpu_count()} ({cpu_model()}), Python {platform.python_version()}, "
        f"aiokafka {metadata.version('aiokafka')}, cramjam {metadata.version('cramjam')}, "
        f"Apache Kafka {kafka_version(run.settings)} at {run.settings.kafka_bootstrap}, sharing "
        f"the CPUs with this client; load average {load[0]} before, {load[1]} after.",
        "",
        f"Workload: {out.messages:,} messages of {run.args.records_per_message} trade tick(s), "
        f"encoded once by `encode_ticks` ({payload:.0f} bytes a message with its key) and keyed "
        f"`{EXCHANGE}:SYMx` over {INSTRUMENTS} instruments; {PARTITIONS} partitions, a fresh topic "
        f"for every sample; timing starts once each partition has acknowledged a warm-up message. "
        f"{run.args.repeat} interleaved repeats; MB/s counts key and value bytes before "
        f"compression. Every row but the baseline is `create_producer(settings, **overrides)`, "
        f"so acks=all and idempotence come from `PRODUCER_TUNING`."
        + ("" if has_zstd() else " zstd skipped: aiokafka reports no zstd codec (cramjam)."),
        "",
        "Tight loop, the same for every row: `await producer.send(...)` for each message, then "
        "`await producer.flush()`.",
        "",
        *header("baseline"),
        *(row(v, out.rate(BASELINE)) for v in out.grid),
        "",
        "Yielding loop: the same, plus `await asyncio.sleep(0)` after every send, as in a producer "
        "fed by a websocket; the sender then ships whatever has queued instead of full batches.",
        "",
        *header(first_check.name.removesuffix(", yielding loop")),
        *(row(v, out.rate(first_check)) for v in out.check),
    ]
    if out.latency:
        lines += [
            "",
            f"Send-to-ack latency at a low rate: {run.args.latency_messages:,} messages one at a "
            f"time, each awaited, then a {run.args.latency_interval_ms:g} ms pause:",
            "",
            "| variant | p50 ms | p99 ms | max ms |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {v.name} | {percentile(s, 50):.2f} | {percentile(s, 99):.2f} | {max(s):.2f} |"
                for v, s in out.latency.items()
            ),
        ]
    lines += [
        "",
        f"Noise: slowest / fastest sample of a variant is {statistics.median(spreads):.0%} apart "
        f"at the median, {max(spreads):.0%} at worst; the rule treats rates within "
        f"{TIE_TOLERANCE:.0%} as equal, lets a codec that stores fewer bytes cost up to "
        f"{COMPRESSION_ALLOWANCE:.0%}, and works on medians.",
        "",
        "**Conclusion.**  ",
        conclusion(out, messages),
        "",
    ]
    return "\n".join(lines)


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.producer_settings",
        description="Measure the Kafka producer's linger, batch size and compression against a "
        "raw aiokafka baseline, and write the results to BENCHMARKS.md.",
    )
    parser.add_argument("--messages", type=at_least(1), default=100_000, help="messages per sample")
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS, else the local broker)",
    )
    parser.add_argument(
        "--records-per-message", type=at_least(1), default=1, help="ticks in each Kafka message"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("BENCHMARKS.md"),
        help="markdown file in which this benchmark's section is written or replaced",
    )
    parser.add_argument(
        "--repeat", type=at_least(2), default=2, help="samples per variant (best and median shown)"
    )
    parser.add_argument(
        "--latency-messages",
        type=at_least(0),
        default=2000,
        help="messages in each one-at-a-time latency pass; 0 skips the pass",
    )
    parser.add_argument(
        "--latency-interval-ms",
        type=float,
        default=1.0,
        help="pause after each acknowledged message in the latency pass",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.latency_interval_ms <= 1000:
        parser.error("--latency-interval-ms must be between 0 and 1000")
    if args.latency_messages > args.messages:
        parser.error("--latency-messages cannot exceed --messages")
    if 0 < args.latency_messages < 2:
        parser.error("--latency-messages must be 0 or at least 2 (percentiles need two samples)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    environ = dict(os.environ)
    if args.bootstrap:
        environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap
    settings = Settings.from_env(environ)
    started_at, load_before, wall = datetime.now(UTC), os.getloadavg(), time.perf_counter()
    print(f"encoding {args.messages:,} messages ...", file=sys.stderr)
    messages = generate_messages(args.messages, args.records_per_message)
    out = asyncio.run(measure(args, settings, messages))
    run = RunInfo(
        args, settings, started_at, load_before, os.getloadavg(), time.perf_counter() - wall
    )
    section = render(out, messages, run)
    output: Path = args.output
    write_section(output, SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
