"""Bars from trades through the real pipeline: raw ticks → `mdp process` (bars on) →
md.bars.raw → `mdp process` → md.bars → `mdp sink` → PostgreSQL, every stored derived bar
compared field by field with bars computed here, independently, from the same trades."""

from __future__ import annotations

import asyncio
import random
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from marketdata.codec import BarBatch, decode, encode_ticks
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from sandbox.binance import FakeBinance, kline_row
from tests.e2e.conftest import Pipeline, own_pipeline
from tests.e2e.timeline import own_minute
from tests.integration.polling import wait_until
from tests.integration.processors.support import free_port, processor_process, read_topic
from tests.integration.sinks.support import publish

_STORED = (
    "SELECT interval, timestamp, open, high, low, close, volume, trade_count, closed, source,"
    " round(vwap, 12) FROM market_data_ohlcv WHERE exchange = %s AND symbol = %s"
    " ORDER BY interval, timestamp"
)
Row = tuple[Any, ...]


def trade(symbol: str, at: datetime, n: int, price: str, size: str, *, side: str | None) -> Tick:
    return Tick(
        exchange="BINANCE", symbol=symbol, timestamp=at, source="binance.trade",
        trade_id=str(n), price=Decimal(price), size=Decimal(size), side=side,  # type: ignore[arg-type]
        received_at=at + timedelta(milliseconds=3),
    )  # fmt: skip


def expected_rows(ticks: Sequence[Tick], closed: bool = True) -> list[Row]:
    """The rows of the derived 1s and 1m bars of ``ticks`` (one instrument), from the
    definitions: quotes left out, each trade once, open/close the first/last by time then id."""
    trades = {t.key: t for t in ticks if t.side not in ("bid", "ask")}.values()
    rows = []
    for interval, seconds in (("1m", 60), ("1s", 1)):
        buckets: dict[datetime, list[Tick]] = defaultdict(list)
        for t in trades:
            epoch = int(t.timestamp.timestamp())
            start = datetime.fromtimestamp(epoch - epoch % seconds, UTC)
            buckets[start].append(t)
        for start in sorted(buckets):
            group = sorted(buckets[start], key=lambda t: (t.timestamp, int(t.trade_id)))
            volume = sum((t.size for t in group), Decimal(0))
            notional = sum((t.price * t.size for t in group), Decimal(0))
            with localcontext(prec=60):
                vwap = (notional / volume).quantize(Decimal("1e-12"), ROUND_HALF_UP)
            rows.append((
                interval, start, group[0].price, max(t.price for t in group),
                min(t.price for t in group), group[-1].price, volume,
                len(group), closed, "derived.trades", vwap,
            ))  # fmt: skip
    return rows


def messages(ticks: Sequence[Tick], per_message: int) -> list[tuple[bytes, bytes]]:
    by_key: dict[bytes, list[Tick]] = defaultdict(list)
    for tick in ticks:
        by_key[instrument_key(tick.exchange, tick.symbol)].append(tick)
    return [
        (key, encode_ticks(group[i : i + per_message]))
        for key, group in by_key.items()
        for i in range(0, len(group), per_message)
    ]


def burst(symbol: str, start: datetime, seconds: range, first_id: int, seed: int) -> list[Tick]:
    """Trades (several per second, some in one microsecond) and quotes far outside their
    prices, which must not count; delivered a little out of order."""
    rng = random.Random(seed)
    out, n = [], first_id
    for second in seconds:
        for _ in range(rng.randint(1, 4)):
            at = start + timedelta(
                seconds=second, microseconds=rng.choice([0, 0, 250_000, 700_000])
            )
            price = f"{rng.randint(9_900, 10_100) / 100:.2f}"
            size = f"{rng.randint(1, 900) / 1000:.3f}"
            out.append(trade(symbol, at, n, price, size, side=rng.choice(["buy", "sell", None])))
            n += 1
        if rng.random() < 0.3:
            quote = "1.00" if rng.random() < 0.5 else "999.00"
            out.append(trade(symbol, start + timedelta(seconds=second), n, quote, "5", side="bid"))
            n += 1
    for i in range(0, len(out) - 3, 7):  # swaps within a second or two: inside the lateness
        out[i], out[i + 2] = out[i + 2], out[i]
    return out


class BarsPipeline(Pipeline):
    """The e2e pipeline with the processor's web port known (for its metrics)."""

    web_port: int = 0

    def start(self, name: str, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        if name != "process":
            super().start(name, args, env)
            return
        self.web_port = free_port()
        process = processor_process(self.settings, self.log, web_port=self.web_port)
        self.roles[name] = process
        self.processes.append(process)

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
        return 0.0

    async def settle(
        self, symbol: str, expected: list[Row], within: float = 90.0, interval: str | None = None
    ) -> list[Row]:
        """The stored derived bars of ``symbol`` (of ``interval`` only, when given) once equal
        to ``expected`` (or as last seen, after ``within`` seconds)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            rows = await asyncio.to_thread(self.query, _STORED, ("BINANCE", symbol))
            rows = [row for row in rows if interval is None or row[0] == interval]
            if rows == expected or asyncio.get_running_loop().time() > deadline:
                return rows
            await asyncio.sleep(0.5)


@pytest.fixture
async def bars_pipeline(
    settings: Settings, unique: str, log: Path, processes: list[subprocess.Popen[bytes]],
    request: pytest.FixtureRequest,
) -> AsyncIterator[BarsPipeline]:  # fmt: skip
    """A processor building 1s and 1m bars (lateness 1 s) and a sink, of this test's own."""
    updates = {"bars_enabled": True, "bars_intervals": "1s,1m", "bars_lateness_ms": 1000,
               **getattr(request, "param", {})}  # fmt: skip
    async with own_pipeline(BarsPipeline, settings, unique, log, processes, **updates) as running:
        yield running


@pytest.mark.parametrize("bars_pipeline", [{"bars_idle_close_s": 1.0}], indirect=True)
async def test_derived_bars_equal_bars_computed_from_the_trades_late_trades_revise_them(
    bars_pipeline: BarsPipeline, unique: str
) -> None:
    p = bars_pipeline
    t0 = own_minute()
    busy, quiet = f"{unique}BUSY", f"{unique}QUIET"
    busy_ticks = burst(busy, t0, range(0, 180, 3), 1000, seed=1)
    quiet_ticks = burst(quiet, t0, range(5, 20), 5000, seed=2)
    await publish(p.settings, p.settings.topics.ticks_raw,
                  messages(busy_ticks + quiet_ticks, per_message=15))  # fmt: skip

    # Every bar closed: the busy instrument's earlier ones by its event time, and the last ones
    # of both by the idle timeout, as no later trade ever comes (the quiet instrument has one
    # minute of trades only: no trade of its own ever passes its bars' ends plus the lateness).
    rows = await p.settle(busy, expected_rows(busy_ticks))
    assert rows == expected_rows(busy_ticks)
    rows = await p.settle(quiet, expected_rows(quiet_ticks))
    assert rows == expected_rows(quiet_ticks)
    assert all(row[8] for row in rows)

    # Two minutes after its bar closed, a trade of minute 0 revises it (and makes a 1s bar of
    # its own second, closed at once); a quote that late changes nothing.
    at = t0 + timedelta(seconds=31, microseconds=5)
    late = [trade(busy, at, 9000, "150.00", "2", side="sell"),
            trade(busy, at, 9001, "0.50", "3", side="ask")]  # fmt: skip
    late_before = await asyncio.to_thread(p.metric, "mdp_bars_late_trades_total")
    await publish(p.settings, p.settings.topics.ticks_raw, messages(late, per_message=15))
    rows = await p.settle(busy, expected_rows(busy_ticks + late))
    assert rows == expected_rows(busy_ticks + late)
    assert next(r for r in rows if r[1] == t0 and r[0] == "1m")[3] == Decimal("150.00")
    assert await asyncio.to_thread(p.metric, "mdp_bars_late_trades_total") == late_before + 1
    assert await asyncio.to_thread(p.metric, "mdp_bars_too_late_trades_total") == 0.0


@pytest.mark.parametrize(
    "bars_pipeline",
    [
        # Nothing committed: the next worker replays all its input.
        pytest.param({"bars_idle_close_s": 4.0, "process_commit_interval_s": 60.0}, id="replay"),
        # The first half committed: only md.ticks holds its trades for the next worker.
        pytest.param({"bars_idle_close_s": 4.0, "process_commit_interval_s": 0.2}, id="rebuild"),
    ],
    indirect=True,
)
async def test_processor_killed_mid_window_leaves_exactly_right_bars(
    bars_pipeline: BarsPipeline, unique: str
) -> None:
    """kill -9 with a minute half filled: the next worker rebuilds the bars from md.ticks and
    replays its uncommitted input, and neither loses nor counts twice any trade; no bar version
    it emits has fewer trades than one emitted before."""
    p = bars_pipeline
    t0 = own_minute()
    symbol = f"{unique}KILL"
    first = burst(symbol, t0, range(0, 30), 1000, seed=3)
    await publish(p.settings, p.settings.topics.ticks_raw, messages(first, per_message=10))
    half = [row for row in expected_rows(first, closed=False) if row[0] == "1m"]
    # The minute is open, half filled, when the worker dies.
    assert await p.settle(symbol, half, within=60, interval="1m") == half
    await asyncio.sleep(2)  # commits, every 0.2 s in the "rebuild" case
    await p.kill("process")

    rest = burst(symbol, t0, range(30, 75), 3000, seed=4)
    await publish(p.settings, p.settings.topics.ticks_raw, messages(rest, per_message=10))
    # A producer's backfill sends some of the first trades again.
    await publish(p.settings, p.settings.topics.ticks_raw, messages(first[:40], per_message=10))
    p.start("process")
    everything = first + rest
    rows = await p.settle(symbol, expected_rows(everything), within=120)
    assert rows == expected_rows(everything)

    # What the workers derived (md.bars.raw; md.bars also holds the replayed forwarding of it).
    counts: list[int | None] = []
    for message in await read_topic(p.settings, p.settings.topics.bars_raw, idle_s=2):
        batch = decode(message.value)
        assert isinstance(batch, BarBatch)
        counts += [b.trade_count for b in batch.records
                   if b.symbol == symbol and b.interval == "1m" and b.timestamp == t0]  # fmt: skip
    assert None not in counts
    assert counts == sorted(c or 0 for c in counts)
    assert counts[-1] == half[0][7] + sum(
        1 for t in rest if t.side != "bid" and t.timestamp < t0 + timedelta(minutes=1)
    )


def _trades_making(row: list[Any], first_id: int) -> list[dict[str, Any]]:
    """Binance trade events whose 1m bar is exactly the kline ``row``: open, high, low and close
    at their prices, its volume split over its trade count."""
    open_ms, count = row[0], row[8]
    prices = [row[1], row[2], row[3], *[row[1]] * (count - 4), row[4]]
    units = int(Decimal(row[5]) * 10**8)
    sizes = [units // count] * count
    sizes[0] += units - sum(sizes)
    return [{"e": "trade", "E": open_ms + 1 + i * 100, "s": "BTCUSDT", "t": first_id + i,
             "p": price, "q": f"{Decimal(size) / 10**8:.8f}", "T": open_ms + i * 100,
             "m": i % 2 == 0, "M": True}
            for i, (price, size) in enumerate(zip(prices, sizes, strict=True))]  # fmt: skip


@pytest.mark.parametrize("bars_pipeline", [{"bars_idle_close_s": 1.0}], indirect=True)
async def test_derived_1m_bars_of_the_binance_sandbox_trades_equal_its_klines(
    bars_pipeline: BarsPipeline,
) -> None:
    """The sandbox's trades, pushed over its WebSocket so that each minute's trades make that
    minute's kline, through `mdp produce binance`: the derived bars equal the sandbox's klines."""
    p = bars_pipeline
    t0 = own_minute()
    t0_ms = int(t0.timestamp() * 1000)
    # Minutes whose kline has at least the four trades that open, high, low and close need.
    minutes = [m for m in range(10) if kline_row("BTCUSDT", "1m", t0_ms + m * 60_000)[8] >= 4][:3]
    rows = [kline_row("BTCUSDT", "1m", t0_ms + m * 60_000) for m in minutes]
    fake = FakeBinance(now_ms=t0_ms + 11 * 60_000)
    await fake.start()
    try:
        urls = {"BINANCE_API_BASE_URL": fake.rest_url, "BINANCE_STREAM_URL": fake.stream_url}
        p.start("binance", ["produce", "binance", "--symbols", "BTCUSDT", "--streams", "trade"],
                urls)  # fmt: skip
        await wait_until(lambda: fake.subscriptions >= 1, within=30)
        await asyncio.sleep(0.5)
        first_id = 50_000
        for row in rows:
            for event in _trades_making(row, first_id):
                await fake.push("btcusdt@trade", event)
            first_id += row[8]
        expected = [
            ("1m", datetime.fromtimestamp(r[0] / 1000, UTC), Decimal(r[1]), Decimal(r[2]),
             Decimal(r[3]), Decimal(r[4]), Decimal(r[5]), r[8], True, "derived.trades")
            for r in rows
        ]  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 90
        stored: list[Row] = []
        while stored != expected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            found = await asyncio.to_thread(p.query, _STORED, ("BINANCE", "BTCUSDT"))
            stored = [r[:10] for r in found
                      if r[0] == "1m" and t0 <= r[1] < t0 + timedelta(minutes=10)]  # fmt: skip
        assert stored == expected
    finally:
        await fake.aclose()
