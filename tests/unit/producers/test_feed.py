"""A feed's counts, as the loop and a venue leave them, read as Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import CollectorRegistry, generate_latest

from marketdata.records import Tick
from producers.feed import MAX_INSTRUMENTS, FeedMetrics, LiveStats


def tick(symbol: str) -> Tick:
    now = datetime.now(UTC)
    return Tick(exchange="TEST", symbol=symbol, timestamp=now, source="test", trade_id="1",
                price=Decimal(1), size=Decimal(1), side="buy", received_at=now)  # fmt: skip


def test_the_metrics_carry_every_instrument_and_the_connection() -> None:
    feed = LiveStats.of("binance", ["BTCUSDT", "ETHUSDT"], watchdog_s=30)
    feed.connected = True
    feed.heard()
    feed.seen([tick("BTCUSDT"), tick("BTCUSDT")])
    feed.reconnected()
    feed.gap_filled("BTCUSDT", 12)
    feed.gap_unfilled("ETHUSDT")
    registry = CollectorRegistry()
    registry.register(FeedMetrics([feed]))
    text = generate_latest(registry).decode()
    assert 'mdp_producer_connected{venue="binance"} 1.0' in text
    assert 'mdp_producer_reconnects_total{symbol="ETHUSDT",venue="binance"} 1.0' in text
    assert 'mdp_producer_gaps_filled_total{symbol="BTCUSDT",venue="binance"} 1.0' in text
    assert 'mdp_producer_gaps_filled_total{symbol="ETHUSDT",venue="binance"} 0.0' in text
    assert 'mdp_producer_gaps_unfilled_total{symbol="ETHUSDT",venue="binance"} 1.0' in text
    ages = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mdp_producer_seconds_since_last_data{")}  # fmt: skip
    assert ages['symbol="BTCUSDT",venue="binance"'] < 1
    assert set(ages) == {'symbol="BTCUSDT",venue="binance"', 'symbol="ETHUSDT",venue="binance"'}
    assert (feed.records, feed.instruments["BTCUSDT"].records, feed.gap_records) == (2, 2, 12)
    assert feed.healthy()


def test_a_silent_or_closed_connection_is_not_healthy() -> None:
    feed = LiveStats.of("dtc", ["ESZ4"], watchdog_s=0)
    feed.connected = True
    feed.heard()
    assert not feed.healthy()  # silent for longer than a watchdog of 0 s
    feed.watchdog_s = 60
    assert feed.healthy()
    feed.connected = False
    assert not feed.healthy()


def test_symbols_the_venue_sends_unasked_are_bounded() -> None:
    feed = LiveStats.of("ibkr", [], watchdog_s=30)
    feed.seen([tick(f"S{n}") for n in range(MAX_INSTRUMENTS + 5)])
    assert len(feed.instruments) == MAX_INSTRUMENTS
    assert feed.records == MAX_INSTRUMENTS + 5
