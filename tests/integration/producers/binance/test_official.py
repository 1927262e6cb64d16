"""Against the real Binance: run with PROVIDERS_SANDBOX_MODE=official (needs the internet).

Every Binance endpoint the project uses: klines, historicalTrades, aggTrades (REST), and the
WebSocket streams (trade, aggTrade, kline, bookTicker) through `mdp produce binance` into Kafka.
``BINANCE_API_BASE_URL``/``BINANCE_STREAM_URL`` may point them elsewhere (the sandbox venue, to
check these tests themselves offline)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from producers.binance.connector import RestClient, rest_client
from producers.binance.history import BinanceRest, KlinePager, agg_trades_after, trades_after
from tests.integration.processors.support import read_ticks, read_topic
from tests.integration.roles import role_process

pytestmark = pytest.mark.skipif(
    os.environ.get("PROVIDERS_SANDBOX_MODE") != "official",
    reason="PROVIDERS_SANDBOX_MODE is not 'official'",
)


@pytest.fixture
def client() -> Iterator[RestClient]:
    made = rest_client(Settings.from_env())
    yield made
    made.session.close()


def test_real_klines_page_and_normalise(client: RestClient) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    pager = KlinePager(client, "BTCUSDT", "1m", start, start + timedelta(minutes=59))
    server_time = pager.server_time()
    ((bars, rejected),) = list(pager.pages(server_time))
    assert rejected == []
    assert len(bars) == 60
    assert all(bar.closed and bar.high >= bar.low for bar in bars)
    assert pager.used_weight > 0


@pytest.mark.parametrize(
    ("pager", "latest", "source"),
    [(trades_after, "historical_trades", "binance.trade"),
     (agg_trades_after, "agg_trades", "binance.aggTrade")],
)  # fmt: skip
def test_real_trades_by_id_page_and_normalise(
    client: RestClient, pager: object, latest: str, source: str
) -> None:
    rest = BinanceRest(client)
    latest_rows = rest.call(getattr(client, latest), "BTCUSDT", limit=1)
    assert latest_rows, f"no {latest} answered"
    newest = latest_rows[0]
    newest_id = int(newest["id" if source == "binance.trade" else "a"])
    last_id = max(newest_id - 600, 0)
    ((ticks, rejected),) = list(pager(rest, "BTCUSDT", last_id, max_pages=1))  # type: ignore[operator]
    assert rejected == []
    ids = [int(t.trade_id) for t in ticks]
    assert ids[0] > last_id
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every trade, in order
    assert len(ticks) >= min(500, newest_id - last_id)
    assert {t.source for t in ticks} == {source}
    assert all(t.price > 0 and t.size > 0 and t.side in {"buy", "sell"} for t in ticks)


async def test_real_streams_through_the_producer_into_kafka(
    settings: Settings, log: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    await ensure_topics(settings, settings.topics.all())
    # The venue settings of this environment (official mode, any URL given), the test's own
    # broker, database and topics.
    ours = ("KAFKA_BOOTSTRAP_SERVERS", "MARKET_DATA_DATABASE_URL", "MDP_TOPIC_PREFIX")
    own = {name: value for name, value in settings.to_env().items() if name in ours}
    env = Settings.from_env({**os.environ, **own}).to_env()
    args = ["produce", "binance", "--symbols", "BTCUSDT",
            "--streams", "trade,aggTrade,kline_1m,bookTicker"]  # fmt: skip
    processes.append(role_process(args, env, log))
    await asyncio.sleep(15)
    processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(processes[0].wait, 5) == 0
    ticks = await read_ticks(settings, settings.topics.ticks_raw)
    assert {"binance.trade", "binance.aggTrade", "binance.bookTicker"} <= {t.source for t in ticks}
    assert all(t.symbol == "BTCUSDT" and t.exchange == "BINANCE" for t in ticks)
    assert await read_topic(settings, settings.topics.bars_raw, idle_s=1)  # kline updates
    assert "Traceback" not in await asyncio.to_thread(log.read_text)
