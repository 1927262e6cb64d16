"""The real path as the source of bench/pipeline.py: the Binance sandbox venue streaming trades
to `mdp produce binance`, and signed TradingView alerts posted to `mdp webhook`, each a process
of its own, feeding the same `mdp process` and `mdp sink` as the generator runs.

The venue (sandbox.binance's FakeBinance and its replay, on a port of the run's own) and the
alert load run in child processes started as ``python -m bench.sources --venue|--alerts PLAN``:
neither takes CPU from the poller that times the rows. The venue starts sending once the
producer has subscribed, so the producer's start stays outside the timed part; each trade is
stamped with the time it was sent, each alert with the time it was due.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import aiohttp
import psycopg

from bench.processor import cpu_seconds
from bench.support import free_port
from marketdata.settings import Settings
from sandbox.binance import FakeBinance, replay
from webhook.auth import sign

if TYPE_CHECKING:
    from bench.pipeline import Roles

Figures = dict[str, float]
SECRET: Final = "bench-pipeline-webhook-secret-0123"  # noqa: S105 - the bench signs its own
BINANCE: Final = "BINANCE"  # the exchange the Binance producer stores its trades under
POLL_S: Final = 0.02
HOOK_LOOKBACK_S: Final = 5.0
NEWER_ROWS: Final = (
    "SELECT symbol, trade_id, timestamp FROM market_data_ticks"
    " WHERE exchange = %s AND symbol = ANY(%s) AND timestamp >= %s"
)


@dataclass(frozen=True)
class VenuePlan:
    """``count`` trades of each of ``symbols`` at ``rate`` a second each (0: as fast as the
    venue goes), on ``port``."""

    port: int
    symbols: list[str]
    count: int
    rate: float = 0.0


@dataclass(frozen=True)
class AlertPlan:
    """``count`` signed alerts posted to ``url`` at ``rate`` a second, dealt over ``symbols``
    of ``exchange``."""

    url: str
    exchange: str
    symbols: list[str]
    count: int
    rate: float


async def serve_venue(plan: VenuePlan) -> Figures:
    """In the venue process: serve, wait for the producer's subscription, send the plan's
    trades; then report when the first and the last went and the CPU used, and serve on (the
    producer keeps its connection) until stopped."""
    fake = FakeBinance(port=plan.port)
    await fake.start()
    while not fake.subscriptions:  # noqa: ASYNC110 - a count the fake keeps, no event
        await asyncio.sleep(0.01)
    cpu, first = time.process_time(), time.time()
    print(json.dumps({"first": first}), flush=True)
    await replay(fake, plan.rate or math.inf, symbols=plan.symbols, count=plan.count)
    fake.trades.clear()  # kept for historicalTrades; not needed here, and they add up
    print(json.dumps({"acked": time.time(), "cpu": time.process_time() - cpu}), flush=True)
    await asyncio.Event().wait()
    return {}


def alert(plan: AlertPlan, n: int, due: float) -> tuple[bytes, dict[str, str]]:
    """The ``n``th alert, as TradingView sends it: a JSON body signed with the secret."""
    body = json.dumps({
        "ticker": plan.symbols[n % len(plan.symbols)], "exchange": plan.exchange,
        "price": f"{61000 + n % 997}.5", "volume": "0.1", "id": n,
        "time": datetime.fromtimestamp(due, UTC).isoformat(),
    }).encode()  # fmt: skip
    return body, {"X-Signature": "sha256=" + sign(body, SECRET.encode()),
                  "Content-Type": "text/plain"}  # fmt: skip


async def post_alerts(plan: AlertPlan) -> Figures:
    """In the alert process: the plan's alerts at its rate, each stamped with the time it was
    due; when the first and the last were answered, the 2xx count and the requests' p50/p99."""
    latencies: list[float] = []
    ok = 0

    async def one(session: aiohttp.ClientSession, n: int, due: float) -> None:
        nonlocal ok
        body, headers = alert(plan, n, due)
        sent = time.perf_counter()
        async with session.post(plan.url, data=body, headers=headers) as response:
            await response.read()
            ok += response.status in {200, 202}
        latencies.append(time.perf_counter() - sent)

    cpu = time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        first = time.time()
        tasks = []
        for n in range(plan.count):
            due = first + n / plan.rate
            if (delay := due - time.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n, due)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return {"first": first, "acked": time.time(), "cpu": time.process_time() - cpu,
            "ok": ok, "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]}  # fmt: skip


class Child:
    """``python -m bench.sources --FLAG PLAN``: reports one JSON line when its work is done."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process, self.name = process, name

    @classmethod
    async def start(cls, flag: str, plan: VenuePlan | AlertPlan, log: Path) -> Child:
        with log.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.sources", flag, json.dumps(asdict(plan)),
                stdout=asyncio.subprocess.PIPE, stderr=errors,
            )  # fmt: skip
        return cls(process, flag.removeprefix("--"))

    async def result(self) -> Figures:
        """The next line of figures it reports."""
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended without its figures")
        figures: Figures = json.loads(line)
        return figures

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def _role(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "mdp", *args], env={**os.environ, **env},
                                stdout=output, stderr=subprocess.STDOUT)  # fmt: skip


def producer_process(settings: Settings, port: int, symbols: Sequence[str], log: Path
                     ) -> subprocess.Popen[bytes]:  # fmt: skip
    """`mdp produce binance` in sandbox mode against the venue on ``port``."""
    env = {**settings.to_env(), "PROVIDERS_SANDBOX_MODE": "sandbox", "MDP_LOG_LEVEL": "INFO",
           "BINANCE_STREAM_URL": f"ws://127.0.0.1:{port}",
           "BINANCE_API_BASE_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    return _role(["produce", "binance", "--symbols", ",".join(symbols), "--streams", "trade"],
                 env, log)  # fmt: skip


def webhook_process(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**settings.to_env(), "TRADINGVIEW_HMAC_SECRET": SECRET, "MDP_WEBHOOK_PORT": str(port),
           "MDP_WEBHOOK_HOST": "127.0.0.1", "MDP_LOG_LEVEL": "WARNING"}  # fmt: skip
    return _role(["webhook"], env, log)


async def _webhook_up(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            if process.poll() is not None:
                raise RuntimeError("`mdp webhook` exited early")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.post(url, data=b"{}") as response:
                    await response.read()
                    return
            await asyncio.sleep(0.1)


def _stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def count_symbols(settings: Settings, exchange: str, symbols: Sequence[str]) -> int:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM market_data_ticks WHERE exchange = %s AND symbol = ANY(%s)",
            [exchange, list(symbols)],
        ).fetchone()
    return int(row[0]) if row else 0


def _symbols(run_id: str, part: str, count: int) -> list[str]:
    """Symbols no other run uses, so the run's rows are told apart by them alone."""
    return [f"{part}{n}X{run_id.upper()}USDT" for n in range(count)]


async def venue_sustained(
    roles: Roles, settings: Settings, run_id: str, *, ticks: int, symbols: int, logs: Path
) -> Figures:
    """The venue sends ``ticks`` trades as fast as it goes; seconds from its first send until the
    sink has committed every row, and the cores each process used meanwhile."""
    names, port = _symbols(run_id, "S", symbols), free_port()
    plan = VenuePlan(port, names, ticks // symbols)
    total = plan.count * symbols
    venue = await Child.start("--venue", plan, logs / "venue.log")
    producer = producer_process(settings, port, names, logs / "produce.log")
    try:
        before = await roles.progress()
        began = await venue.result()  # the producer has subscribed: the venue sends
        used = roles.usage()
        producer_cpu, waiting = cpu_seconds(producer.pid), asyncio.create_task(venue.result())
        last = 0.0
        async with asyncio.timeout(120 + total / 1000):
            while True:
                roles.check()
                if producer.poll() is not None:
                    raise RuntimeError(f"`mdp produce binance` exited; see {logs}/produce.log")
                if waiting.done():
                    waiting.result()
                rows = (await roles.progress())[1] - before[1]
                if rows >= total:
                    last = time.time()
                    break
                await asyncio.sleep(0.05)
        sent = await waiting
        producer_cpu = cpu_seconds(producer.pid) - producer_cpu
        after = roles.usage()
    finally:
        await venue.stop()
        await asyncio.to_thread(_stop, producer)
    stored = await asyncio.to_thread(count_symbols, settings, BINANCE, names)
    if stored != total:
        raise RuntimeError(f"{stored:,} rows stored for {total:,} trades sent")
    seconds = last - began["first"]
    spent = [b - a for a, b in zip(used, after, strict=True)]
    return {"ticks": total, "seconds": seconds, "sent": sent["acked"] - began["first"],
            "venue": sent["cpu"] / seconds, "producer": producer_cpu / seconds,
            "processor": spent[0] / seconds, "sink": spent[1] / seconds,
            "machine": spent[2] / spent[3] * (os.cpu_count() or 1)}  # fmt: skip


async def real_latency(
    roles: Roles, settings: Settings, run_id: str, *, rate: float, seconds: float,
    hook_rate: float, symbols: int, logs: Path,
) -> tuple[dict[str, list[float]], Figures]:  # fmt: skip
    """The venue at ``rate`` trades/s in all and the webhook at ``hook_rate`` alerts/s together
    for ``seconds``; each row's delay from its timestamp to the first poll that saw it, by
    source, and what each process used."""
    names, port, hook_port = _symbols(run_id, "L", symbols), free_port(), free_port()
    hook_exchange, hook_names = f"HOOK-{run_id.upper()}", _symbols(run_id, "W", 4)
    plan = VenuePlan(port, names, max(1, int(rate * seconds) // symbols), rate / symbols)
    url = f"http://127.0.0.1:{hook_port}/webhooks/tradingview"
    alerts = AlertPlan(url, hook_exchange, hook_names, int(hook_rate * seconds), hook_rate)
    hook = webhook_process(settings, hook_port, logs / "webhook.log")
    producer = producer_process(settings, port, names, logs / "produce.log")
    venue: Child | None = None
    poster: Child | None = None
    try:
        await _webhook_up(url, hook)
        since = datetime.now(UTC)  # before anything is sent: every row is at or after it
        venue = await Child.start("--venue", plan, logs / "venue.log")
        # The alerts start as the venue's first trade goes (once the producer has subscribed),
        # so that both sources run together.
        await venue.result()
        poster = await Child.start("--alerts", alerts, logs / "alerts.log")
        # Concurrent requests publish alerts out of time order: the webhook's rows are looked
        # for a while back, the venue's (one ordered stream an instrument) from the newest on.
        expected = {BINANCE: (names, plan.count * symbols, 0.0),
                    hook_exchange: (hook_names, alerts.count, HOOK_LOOKBACK_S)}  # fmt: skip
        used, started = roles.usage(), time.time()
        producer_cpu, hook_cpu = cpu_seconds(producer.pid), cpu_seconds(hook.pid)
        delays = await arrivals(settings, expected, roles, since, started + seconds + 120)
        elapsed = time.time() - started
        venue_sent, posted = await venue.result(), await poster.result()
        spent = [b - a for a, b in zip(used, roles.usage(), strict=True)]
        figures = {
            "elapsed": elapsed, "producer": (cpu_seconds(producer.pid) - producer_cpu) / elapsed,
            "webhook": (cpu_seconds(hook.pid) - hook_cpu) / elapsed,
            "processor": spent[0] / elapsed, "sink": spent[1] / elapsed,
            "machine": spent[2] / spent[3] * (os.cpu_count() or 1),
            "venue": venue_sent["cpu"] / elapsed, "alerts": posted["cpu"] / elapsed,
            "hook_ok": posted["ok"], "hook_p50": posted["p50"], "hook_p99": posted["p99"],
            "hook_count": alerts.count, "venue_count": plan.count * symbols,
        }  # fmt: skip
    finally:
        for child in (venue, poster):
            if child is not None:
                await child.stop()
        await asyncio.to_thread(_stop, producer, hook)
    return delays, figures


async def arrivals(
    settings: Settings, expected: dict[str, tuple[list[str], int, float]], roles: Roles,
    since: datetime, deadline: float,
) -> dict[str, list[float]]:  # fmt: skip
    """Poll until every expected row (``expected``: exchange -> symbols, rows, look-back s) is
    visible: per exchange, each row's delay from its timestamp to the first poll that returned
    it. An instrument's rows become visible about in timestamp order, so a poll asks only for
    rows at or after the oldest of the newest seen of each instrument, less the look-back."""
    newest = {(ex, s): since for ex, (names, _, _) in expected.items() for s in names}
    seen: set[tuple[str, str, str]] = set()
    delays: dict[str, list[float]] = {exchange: [] for exchange in expected}
    total = sum(count for _, count, _ in expected.values())
    async with await psycopg.AsyncConnection.connect(settings.database, autocommit=True) as db:
        while len(seen) < total:
            roles.check()
            if time.time() > deadline:
                counts = {ex: len(d) for ex, d in delays.items()}
                raise RuntimeError(f"rows seen in time {counts} of {expected}")
            visible = time.time()
            for exchange, (names, _, back) in expected.items():
                oldest = min(newest[(exchange, s)] for s in names) - timedelta(seconds=back)
                cursor = await db.execute(NEWER_ROWS, [exchange, names, oldest])
                for symbol, trade_id, stamp in await cursor.fetchall():
                    if (exchange, symbol, trade_id) not in seen:
                        seen.add((exchange, symbol, trade_id))
                        delays[exchange].append(visible - stamp.timestamp())
                        newest[(exchange, symbol)] = max(newest[(exchange, symbol)], stamp)
            await asyncio.sleep(max(0.0, visible + POLL_S - time.time()))
    return delays


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venue", help="a VenuePlan as JSON")
    parser.add_argument("--alerts", help="an AlertPlan as JSON")
    args = parser.parse_args(argv)
    if args.venue:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_venue(VenuePlan(**json.loads(args.venue))))
    elif args.alerts:
        print(json.dumps(asyncio.run(post_alerts(AlertPlan(**json.loads(args.alerts))))))


if __name__ == "__main__":
    main()
