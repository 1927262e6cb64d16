"""Signed TradingView alerts through `mdp webhook` against a bare Starlette endpoint, one run.

    .venv/bin/python -m bench.webhook

Both servers run as their own processes (uvicorn, one worker); this process is the load
generator (aiohttp). Two loads: as fast as 32 concurrent clients go (requests/s), and a steady
500 requests/s for 10 s (latency p50/p99). Every webhook request is a distinct, signed alert
that is verified, parsed and acknowledged by Kafka before its 202. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp

from bench.report import benchmark_parser, command_line, run_benchmark
from bench.support import free_port
from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from webhook.auth import sign

SECTION = "## Webhook (bench/webhook.py)"
SECRET = "bench-webhook-secret-0123456789"  # noqa: S105 - the bench signs its own alerts

Request = tuple[bytes, dict[str, str]]


def requests_for(count: int) -> list[Request]:
    out = []
    for n in range(count):
        alert = {"ticker": "BTCUSDT", "exchange": "BINANCE", "price": f"{61000 + n}.5",
                 "volume": "0.1", "time": "2024-03-01T12:00:00Z", "n": n}  # fmt: skip
        body = json.dumps(alert).encode()
        out.append((body, {"X-Signature": "sha256=" + sign(body, SECRET.encode()),
                           "Content-Type": "text/plain"}))  # fmt: skip
    return out


async def _wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.post(url, data=b"{}") as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def flood(url: str, requests: list[Request], concurrency: int) -> tuple[float, list[int]]:
    """All requests through ``concurrency`` clients; requests/s and the statuses seen."""
    queue = iter(requests)
    statuses: list[int] = []

    async def client(session: aiohttp.ClientSession) -> None:
        for body, headers in queue:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(requests) / elapsed, statuses


async def paced(url: str, requests: list[Request], rate: float) -> tuple[list[float], list[int]]:
    """Requests started at a steady ``rate``; each one's latency in ms."""
    latencies: list[float] = []
    statuses: list[int] = []

    async def one(session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        statuses.append(response.status)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        start = time.perf_counter()
        tasks = []
        for n, (body, headers) in enumerate(requests):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, body, headers)))
        await asyncio.gather(*tasks)
    return latencies, statuses


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def measure(args: argparse.Namespace, settings: Settings) -> str:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    run = settings.model_copy(update={"topic_prefix": prefix})
    await ensure_topics(run, run.topics.all())
    bare_port, hook_port = free_port(), free_port()
    servers = {
        "bare Starlette, 202 (baseline)": (
            _start(["bench.bare_webhook", str(bare_port)], {}), bare_port),
        "`mdp webhook`: verify, parse, Kafka ack, 202": (
            _start(["mdp", "webhook"], {
                "KAFKA_BOOTSTRAP_SERVERS": run.kafka_bootstrap, "MDP_TOPIC_PREFIX": prefix,
                "TRADINGVIEW_HMAC_SECRET": SECRET, "MDP_WEBHOOK_PORT": str(hook_port),
                "MDP_LOG_LEVEL": "WARNING"}), hook_port),
    }  # fmt: skip
    rows = []
    try:
        for name, (_, port) in servers.items():
            url = f"http://127.0.0.1:{port}/webhooks/tradingview"
            await _wait_up(url)
            flood_requests = requests_for(args.requests)
            rate, statuses = await flood(url, flood_requests, args.concurrency)
            steady = requests_for(int(args.rate * args.seconds) + args.requests)[args.requests :]
            latencies, paced_statuses = await paced(url, steady, args.rate)
            ok = sum(s in {200, 202} for s in statuses + paced_statuses)
            rows.append((name, rate, _pct(latencies, 50), _pct(latencies, 99),
                         ok, len(statuses) + len(paced_statuses)))  # fmt: skip
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    baseline = rows[0][1]
    table = [
        f"| {name} | {rate:,.0f} | {rate / baseline:.2f}x | {p50:.1f} | {p99:.1f}"
        f" | {ok:,}/{total:,} |"
        for name, rate, p50, p99, ok, total in rows
    ]
    lines = [
        SECTION,
        "",
        f"Command: `{command_line('bench.webhook')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; servers and "
        "Kafka 4.1.1 on the same 2 cores as the load generator (aiohttp, this process).",
        "",
        f"Flood: {args.requests:,} requests through {args.concurrency} clients. Steady: "
        f"{args.rate:.0f} requests/s for {args.seconds:.0f} s, latency of each request.",
        "",
        "| server | flood req/s | vs bare | steady p50 ms | steady p99 ms | 2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *table,
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests in the flood")
    parser.add_argument("--concurrency", type=int, default=32, help="flood clients")
    parser.add_argument("--rate", type=float, default=500.0, help="steady requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady duration")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
