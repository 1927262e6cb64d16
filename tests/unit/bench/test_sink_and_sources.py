"""The pure parts of bench/sink.py and bench/sources.py: how spreads are summarised, and that the
real path's alerts and instruments are ones the webhook and the records accept (a bench whose
load the pipeline refused would measure nothing)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal

from bench.sink import ratio, spread
from bench.sources import SECRET, AlertPlan, _symbols, alert
from marketdata.records import Tick
from webhook.alert import alert_to_tick
from webhook.auth import verify_signature


def test_a_spread_is_min_median_max_and_leaves_out_what_was_not_measured() -> None:
    assert spread([3.0, 1.0, 2.0]) == "1.0 / 2.0 / 3.0"
    assert spread([1500.0, math.nan, 2500.0], 1000, 2, "k") == "1.50k / 2.00k / 2.50k"
    assert spread([math.nan, math.nan]) == "n/a"


def test_a_ratio_to_nothing_measured_is_not_measured_rather_than_an_error() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(3.0, 0.0))
    assert spread([ratio(1.0, 0.0), ratio(2.0, 1.0)], 1, 2, "x") == "2.00x / 2.00x / 2.00x"


def test_the_bench_alerts_are_signed_and_become_the_ticks_it_waits_for() -> None:
    plan = AlertPlan("http://x", "HOOK-ABC", _symbols("abc", "W", 2), count=10, rate=5.0)
    due = datetime(2026, 12, 2, 17, 0, 0, 250_000, tzinfo=UTC).timestamp()
    body, headers = alert(plan, 3, due)
    verify_signature(body, headers["X-Signature"], SECRET.encode())  # raises if it is not
    tick = alert_to_tick(json.loads(body), body, datetime.now(UTC))
    assert (tick.exchange, tick.symbol, tick.trade_id) == ("HOOK-ABC", plan.symbols[1], "3")
    assert tick.timestamp.timestamp() == due


def test_the_real_paths_instruments_are_valid_symbols_of_their_own_run() -> None:
    names = _symbols("0a1b2c3d", "S", 3)
    assert len(set(names)) == 3
    assert not set(names) & set(_symbols("0a1b2c3e", "S", 3))
    for name in names:  # a Tick checks its symbol as the producer's records do
        Tick(exchange="BINANCE", symbol=name, timestamp=datetime.now(UTC),
             source="binance.trade", trade_id="1", price=Decimal(1), size=Decimal(1),
             side="buy", received_at=datetime.now(UTC))  # fmt: skip
