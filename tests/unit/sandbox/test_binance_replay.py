"""The Binance sandbox's replay offers exactly what it is told: ``count`` trades a symbol at
``rate`` a second on a schedule (bench/pipeline.py drives the real producer with it)."""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest

from sandbox.binance import FakeBinance, kline_row, replay

SYMBOLS = ("AAAUSDT", "BBBUSDT")


async def test_a_counted_replay_sends_that_many_trades_a_symbol_with_consecutive_ids() -> None:
    fake = FakeBinance()  # not started: push records every trade, with no client to send to
    await replay(fake, math.inf, symbols=SYMBOLS, count=500)
    assert sorted(fake.trades) == sorted(SYMBOLS)
    for symbol in SYMBOLS:
        trades = fake.trades[symbol]
        assert [t["t"] for t in trades] == list(range(2, 502))
        for trade in trades:
            row = kline_row(symbol, "1m", trade["T"] // 60_000 * 60_000)
            assert Decimal(row[3]) <= Decimal(trade["p"]) <= Decimal(row[2])


async def test_a_paced_replay_keeps_to_its_schedule_rather_than_bursting_ahead() -> None:
    fake = FakeBinance()
    started = time.monotonic()
    await replay(fake, 200.0, symbols=SYMBOLS, count=40)
    # The 40th round is due 39/200 s after the start; nothing may go before it is due.
    assert time.monotonic() - started >= 39 / 200
    assert [len(fake.trades[s]) for s in SYMBOLS] == [40, 40]


async def test_a_replay_without_end_needs_a_finite_rate() -> None:
    with pytest.raises(ValueError, match="finite rate"):
        await replay(FakeBinance(), math.inf)
