"""The publisher's batching and its own cost, against the real broker: records per Kafka message,
add-to-acknowledgement latency and CPU seconds per 100k records, for the paths producers take,
the current publisher beside a baseline publisher module (a file: the one before adaptive
batching) in the same run.

    git show 6c740cd:producers/publisher.py > /tmp/publisher_timer.py
    .venv/bin/python -m bench.publisher_cost --baseline /tmp/publisher_timer.py

Paths: ``bulk`` adds chunks of 1,000 ticks over --symbols instruments as fast as it can (a
backfill page, the sustained generator); ``feed`` adds one tick at a time at --rate ticks/s
over --symbols instruments, the loop calling ``flush()`` every MDP_PRODUCER_FLUSH_MS as the
venue loops did (the baseline needs it; the current publisher takes it as "nothing more for
now"). Both end with ``flush(wait=True)``. Each variant runs in a process of its own (CPU
seconds from the process), --repeat times, interleaved; figures are min / median / max. Printed
only: the lead merges figures into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marketdata.codec import decode
from marketdata.kafka import admin_client, create_producer, ensure_topics
from marketdata.records import Tick
from marketdata.settings import Settings
from producers import publisher as current


def make_tick(n: int, symbols: int) -> Tick:
    moment = datetime.now(UTC)
    return Tick(exchange="BENCH", symbol=f"SYM{n % symbols}", timestamp=moment,
                source="bench.trade", trade_id=str(n), price=Decimal("100.5"),
                size=Decimal("0.25"), side="buy", received_at=moment)  # fmt: skip


class Counting:
    """The producer, keeping each message and the moment its send was acknowledged."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.values: list[bytes] = []
        self.acked: list[float] = []

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send(topic, value, **kwargs)
        index = len(self.values)
        self.values.append(value)
        self.acked.append(0.0)

        def answered(_: asyncio.Future[Any]) -> None:
            self.acked[index] = time.perf_counter()

        future.add_done_callback(answered)
        return future


async def one_run(
    path: str, module_file: str, records: int, *, symbols: int, rate: float, linger_ms: int,
    settings: Settings | None = None,
) -> dict[str, float]:  # fmt: skip
    spec = importlib.util.spec_from_file_location("publisher_under_test", module_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    settings = settings or Settings.from_env()
    await ensure_topics(settings, settings.topics.all())
    producer = create_producer(settings)
    await producer.start()
    counting = Counting(producer)
    kwargs: dict[str, Any] = {"stage": "bench", "max_records": 100}
    if "linger_s" in module.Publisher.__init__.__code__.co_varnames:
        kwargs["linger_s"] = linger_ms / 1000
    publisher = module.Publisher(counting, settings.topics, **kwargs)
    added = [0.0] * records
    ticks = [make_tick(n, symbols) for n in range(records)]
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        if path == "bulk":
            for start in range(0, records, 1000):
                now = time.perf_counter()
                for n in range(start, min(start + 1000, records)):
                    added[n] = now
                await publisher.add(ticks[start : start + 1000])
        else:
            first, last_flush = time.perf_counter(), time.perf_counter()
            for n in range(records):
                due = first + n / rate
                while (now := time.perf_counter()) < due:  # noqa: ASYNC110 - a clock, no event
                    await asyncio.sleep(due - now)
                added[n] = time.perf_counter()
                await publisher.add([ticks[n]])
                if time.perf_counter() - last_flush >= linger_ms / 1000:
                    await publisher.flush()
                    last_flush = time.perf_counter()
        await publisher.flush(wait=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await producer.stop()
        async with admin_client(settings) as admin:  # the run's topics are its own
            await admin.delete_topics(settings.topics.all())
    latencies = []
    for value, acked in zip(counting.values, counting.acked, strict=True):
        for record in decode(value).records:
            assert isinstance(record, Tick)
            assert record.trade_id is not None
            latencies.append(acked - added[int(record.trade_id)])
    latencies.sort()
    return {"cpu_per_100k": cpu / records * 100_000, "wall": wall,
            "per_message": records / len(counting.values),
            "messages_per_s": len(counting.values) / wall,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}  # fmt: skip


def spread(values: list[float], digits: int) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, help="the baseline publisher module file")
    parser.add_argument("--records", type=int, default=100_000, help="records, bulk path")
    parser.add_argument("--feed-records", type=int, default=20_000, help="records, feed path")
    parser.add_argument("--symbols", type=int, default=10, help="instruments")
    parser.add_argument("--rate", type=float, default=2_000, help="feed ticks/s")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one variant, in a process of its own
    args = parser.parse_args()
    linger_ms = Settings.from_env().producer_flush_ms
    if args.run:
        path, module_file = json.loads(args.run)
        records = args.records if path == "bulk" else args.feed_records
        figures = asyncio.run(one_run(path, module_file, records, symbols=args.symbols,
                                      rate=args.rate, linger_ms=linger_ms))  # fmt: skip
        print(json.dumps(figures))
        return
    variants = {"baseline": args.baseline, "adaptive": current.__file__}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.repeat):
        for path in ("bulk", "feed"):
            for name, module_file in variants.items():
                env = {**os.environ, "MDP_TOPIC_PREFIX": f"pubcost{uuid.uuid4().hex[:8]}."}
                out = subprocess.run(
                    [sys.executable, "-m", "bench.publisher_cost", *sys.argv[1:],
                     "--run", json.dumps([path, module_file])],
                    env=env, check=True, capture_output=True, text=True,
                )  # fmt: skip
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((path, name), []).append(figures)
                print(f"round {round_ + 1} {path} {name}: {figures}", flush=True)
    load = os.getloadavg()
    print(f"\nmin / median / max of {args.repeat} runs; {args.symbols} instruments, feed at "
          f"{args.rate:g} ticks/s, MDP_PRODUCER_FLUSH_MS={linger_ms}; load average after: "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; nproc {os.cpu_count()}\n")  # fmt: skip
    print(
        "| path | publisher | records/message | messages/s | p50 ms add→ack | p99 ms add→ack "
        "| CPU s / 100k records |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (path, name), runs in results.items():
        column = {key: [run[key] for run in runs] for key in runs[0]}
        print(
            f"| {path} | {name} | {spread(column['per_message'], 1)} | "
            f"{spread(column['messages_per_s'], 0)} | {spread(column['p50_ms'], 1)} | "
            f"{spread(column['p99_ms'], 1)} | {spread(column['cpu_per_100k'], 2)} |"
        )


if __name__ == "__main__":
    main()
