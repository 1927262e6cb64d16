"""Bars from trades (processors/bars.py): against bars computed independently, and each rule."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.records import Bar, BarKey, Tick
from processors.bars import DERIVED_SOURCE, BarBuilder, parse_intervals, parse_sources
from tests.strategies import sample_tick

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KEY = b"BINANCE:BTCUSDT"


def _trade(
    seconds: float, price: str, size: str = "1", trade_id: str = "", **changes: object
) -> Tick:
    return sample_tick(
        timestamp=T0 + timedelta(seconds=seconds), price=Decimal(price), size=Decimal(size),
        trade_id=trade_id or f"{seconds}-{price}-{size}", **changes,
    )  # fmt: skip


def _builder(intervals: str = "1s,1m", lateness_s: float = 2.0, retain_s: float = 600.0,
             idle_close_s: float = 5.0) -> BarBuilder:  # fmt: skip
    return BarBuilder(parse_intervals(intervals), lateness_s=lateness_s, retain_s=retain_s,
                      idle_close_s=idle_close_s)  # fmt: skip


def _latest(emitted: list[Bar]) -> dict[BarKey, Bar]:
    latest: dict[BarKey, Bar] = {}
    for bar in emitted:
        latest[bar.key] = bar
    return latest


def _flush(builder: BarBuilder) -> list[Bar]:
    out, invalid = builder.flush()
    assert invalid == []
    return [bar for bars in out.values() for bar in bars]


@dataclass(frozen=True)
class Expected:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    count: int
    vwap: Decimal


def _oracle(trades: list[Tick], interval_s: int) -> dict[tuple[str, datetime], Expected]:
    """The bars of ``trades`` (each once, quotes left out), computed from the definitions."""
    unique = {t.key: t for t in trades if t.side not in ("bid", "ask")}
    buckets: dict[tuple[str, datetime], list[Tick]] = defaultdict(list)
    for t in unique.values():
        seconds = int((t.timestamp - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds - seconds % interval_s)
        buckets[(t.symbol, start)].append(t)
    out = {}
    for key, group in buckets.items():
        ordered = sorted(group, key=lambda t: (t.timestamp, int(t.trade_id), t.source))
        volume = sum((t.size for t in group), Decimal(0))
        notional = sum((t.price * t.size for t in group), Decimal(0))
        out[key] = Expected(
            open=ordered[0].price, high=max(t.price for t in group),
            low=min(t.price for t in group), close=ordered[-1].price, volume=volume,
            count=len(group), vwap=(notional / volume).quantize(Decimal("1e-12")),
        )  # fmt: skip
    return out


_prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)
_sizes = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("50"), places=3)


@st.composite
def _trades(draw: st.DrawFn) -> list[Tick]:
    count = draw(st.integers(1, 120))
    out = []
    for n in range(count):
        symbol = draw(st.sampled_from(["BTCUSDT", "ETHUSDT"]))
        # Several trades may share one microsecond; ids order them.
        at = T0 + timedelta(microseconds=draw(st.integers(0, 150_000_000)) // 250_000 * 250_000)
        side = draw(st.sampled_from(["buy", "sell", None, "bid", "ask"]))
        out.append(sample_tick(symbol=symbol, timestamp=at, trade_id=str(n), side=side,
                               price=draw(_prices), size=draw(_sizes)))  # fmt: skip
    return out


@settings(max_examples=150, deadline=None)
@given(trades=_trades(), seed=st.integers(0, 2**32), lateness_s=st.sampled_from([0.0, 0.5, 3.0]))
def test_bars_equal_independently_computed_bars_whatever_the_arrival_order(
    trades: list[Tick], seed: int, lateness_s: float
) -> None:
    rng = random.Random(seed)
    # Each trade arrives up to 20 s late (event time), some twice: the order of arrival is the
    # event order shuffled within that lateness.
    arrivals = trades + rng.sample(trades, len(trades) // 5)
    arrivals.sort(key=lambda t: t.timestamp + timedelta(seconds=rng.uniform(0, 20)))
    builder = _builder("1s,1m", lateness_s=lateness_s, retain_s=60)
    emitted: list[Bar] = []
    position = 0
    while position < len(arrivals):
        step = rng.randint(1, 15)
        added = builder.add(arrivals[position : position + step], now=0.0)
        assert added.too_late == 0
        position += step
        emitted += _flush(builder)

    for bar in emitted:
        assert bar.source == DERIVED_SOURCE
    closed_seen: set[BarKey] = set()
    for bar in emitted:  # once closed, a bar's later versions are closed too
        if bar.key in closed_seen:
            assert bar.closed
        if bar.closed:
            closed_seen.add(bar.key)
    latest = _latest(emitted)
    counted = [t for t in trades if t.side not in ("bid", "ask")]
    watermark = {
        s: max((t.timestamp for t in counted if t.symbol == s), default=None)
        for s in ("BTCUSDT", "ETHUSDT")
    }
    for interval, seconds in (("1s", 1), ("1m", 60)):
        expected = _oracle(trades, seconds)
        got = {(b.symbol, b.timestamp): b for b in latest.values() if b.interval == interval}
        assert set(got) == set(expected)
        for (symbol, start), want in expected.items():
            bar = got[(symbol, start)]
            assert (bar.open, bar.high, bar.low, bar.close) == (
                want.open, want.high, want.low, want.close
            )  # fmt: skip
            assert bar.volume == want.volume
            assert bar.trade_count == want.count
            assert bar.vwap is not None
            assert bar.vwap.quantize(Decimal("1e-12")) == want.vwap
            mark = watermark[symbol]
            assert mark is not None
            assert bar.closed == (start + timedelta(seconds=seconds + lateness_s) <= mark)
            state = builder.instruments[f"BINANCE:{symbol}".encode()].bars.get(
                (interval, ms(start))
            )
            if state is not None:  # still held (not yet past its retention)
                assert state.vwap is not None
                assert state.vwap.quantize(Decimal("1e-12")) == want.vwap


def ms(start: datetime) -> int:
    return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_known_bar_field_by_field() -> None:
    builder = _builder("1m", lateness_s=0)
    builder.add([_trade(1, "100", "2", "1"), _trade(20, "105", "1", "2"),
                 _trade(40, "98", "3", "3"), _trade(59.5, "101", "4", "4")], now=0.0)  # fmt: skip
    [bar] = _flush(builder)
    assert bar == Bar(
        exchange="BINANCE", symbol="BTCUSDT", interval="1m", timestamp=T0, open=Decimal("100"),
        high=Decimal("105"), low=Decimal("98"), close=Decimal("101"), volume=Decimal("10"),
        trade_count=4, closed=False, source="derived.trades", vwap=Decimal("100.3"),
    )  # fmt: skip
    state = builder.instruments[KEY].bars[("1m", ms(T0))]
    assert state.vwap == Decimal(200 + 105 + 294 + 404) / 10


def test_vwap_is_a_storable_decimal_within_the_bar_range() -> None:
    # 1/3 of a notional has more digits after the point than a record holds (MAX_SCALE).
    builder = _builder("1m", lateness_s=0)
    builder.add([_trade(1, "1", "1", "1"), _trade(2, "2", "1", "2"),
                 _trade(3, "1", "1", "3")], now=0.0)  # fmt: skip
    [bar] = _flush(builder)
    assert bar.vwap == Decimal("1.333333333333333333333333")
    # Prices of 38 digits: the quotient rounded to 28 would fall below the low; it is clamped.
    low = Decimal("12345678901234.000000000000000000000001")
    builder = _builder("1m", lateness_s=0)
    builder.add([_trade(1, str(low), "1", "1"), _trade(2, str(low), "2", "2")], now=0.0)
    [bar] = _flush(builder)
    assert bar.vwap == low


def test_quotes_never_count() -> None:
    builder = _builder("1m")
    added = builder.add([_trade(1, "100", side="bid"), _trade(2, "101", side="ask")], now=0.0)
    assert added.trades == 0
    assert _flush(builder) == []


def test_only_trades_of_the_counted_sources_make_bars() -> None:
    """Binance's trade and aggTrade streams carry the same trades: with one counted, a bar fed
    by both holds each trade once."""
    builder = BarBuilder(parse_intervals("1m"), lateness_s=2, retain_s=600, idle_close_s=5,
                         trade_sources=parse_sources("binance.trade,dtc.trade"))  # fmt: skip
    trades = [_trade(1, "100", "1", "1"), _trade(2, "102", "2", "2")]
    aggregated = [_trade(1, "100", "1", "7", source="binance.aggTrade"),
                  _trade(2, "102", "2", "8", source="binance.aggTrade")]  # fmt: skip
    added = builder.add([*trades, *aggregated], now=0.0)
    assert (added.trades, added.ignored, added.ignored_sources) == (2, 2, {"binance.aggTrade"})
    [bar] = _flush(builder)
    assert (bar.open, bar.close, bar.volume, bar.trade_count) == (
        Decimal(100), Decimal(102), Decimal(3), 2
    )  # fmt: skip


def test_every_source_counts_with_a_star_alone() -> None:
    assert parse_sources("*") is None
    assert parse_sources(" binance.trade , TradingView,") == frozenset(
        {"binance.trade", "TradingView"}
    )
    with pytest.raises(ValueError, match="alone"):
        parse_sources("*,binance.trade")
    with pytest.raises(ValueError, match="at least one"):
        parse_sources(" , ")


def test_a_bar_closes_once_event_time_passes_its_end_plus_the_lateness() -> None:
    builder = _builder("1m", lateness_s=2)
    builder.add([_trade(10, "100")], now=0.0)
    assert [b.closed for b in _flush(builder)] == [False]
    builder.add([_trade(61.9, "101")], now=0.0)  # next bar, but within the lateness
    next_minute = T0 + timedelta(minutes=1)
    assert [(b.timestamp, b.closed) for b in _flush(builder)] == [(next_minute, False)]
    builder.add([_trade(62, "102")], now=0.0)
    assert {(b.timestamp, b.closed) for b in _flush(builder)} == {
        (T0, True), (next_minute, False)
    }  # fmt: skip


def test_a_late_trade_revises_the_closed_bar_and_is_counted() -> None:
    builder = _builder("1m", lateness_s=1)
    builder.add([_trade(10, "100", "1", "1"), _trade(70, "100", "1", "2")], now=0.0)
    assert [b.closed for b in _flush(builder) if b.timestamp == T0] == [True]
    added = builder.add([_trade(30, "120", "2", "3")], now=0.0)
    assert (added.late, added.too_late) == (1, 0)
    [revised] = _flush(builder)
    assert (revised.timestamp, revised.closed, revised.high, revised.close) == (
        T0, True, Decimal("120"), Decimal("120")
    )  # fmt: skip
    assert (revised.volume, revised.trade_count) == (Decimal("3"), 2)
    again = builder.add([_trade(30, "120", "2", "3")], now=0.0)  # the same trade again
    assert (again.late, again.duplicates) == (0, 1)
    assert _flush(builder) == []


def test_a_trade_past_the_retention_makes_no_bar_and_is_counted() -> None:
    builder = _builder("1m", lateness_s=1, retain_s=60)
    builder.add([_trade(10, "100", trade_id="1")], now=0.0)
    builder.add([_trade(200, "100", trade_id="2")], now=0.0)
    _flush(builder)  # the first bar is past its retention now, and forgotten
    assert ("1m", ms(T0)) not in builder.instruments[KEY].bars
    added = builder.add([_trade(20, "130", trade_id="3")], now=0.0)
    assert added.too_late == 1
    assert _flush(builder) == []


def test_open_bars_are_emitted_once_per_flush_not_per_trade() -> None:
    builder = _builder("1s,1m")
    builder.add([_trade(n / 100, "100", trade_id=str(n)) for n in range(100)], now=0.0)
    emitted = _flush(builder)
    assert sorted((b.interval, b.trade_count) for b in emitted) == [("1m", 100), ("1s", 100)]
    assert _flush(builder) == []  # nothing changed, nothing emitted


def test_a_quiet_instrument_has_its_bars_closed_after_the_idle_timeout() -> None:
    builder = _builder("1s,1m", lateness_s=2, idle_close_s=5)
    builder.add([_trade(10, "100")], now=1000.0)
    _flush(builder)
    end_1m = ms(T0) + 60_000_000
    assert builder.close_idle(now=1004.9, wall_us=end_1m + 10**9) == 0  # not quiet long enough
    # Quiet long enough, but the minute (plus the lateness) has not ended on the wall clock:
    # only the second bar is closed.
    assert builder.close_idle(now=1005.0, wall_us=end_1m) == 1
    assert [(b.interval, b.closed) for b in _flush(builder)] == [("1s", True)]
    assert builder.close_idle(now=1005.0, wall_us=end_1m + 2_000_000) == 1
    assert [(b.interval, b.closed) for b in _flush(builder)] == [("1m", True)]


def test_frozen_bars_refuse_trades_instead_of_starting_a_wrong_bar() -> None:
    builder = _builder("1m")
    builder.add([_trade(10, "100", trade_id="1"), _trade(70, "100", trade_id="2")], now=0.0)
    builder.freeze_before(KEY, ms(T0) + 10_000_000)
    assert list(builder.instruments[KEY].bars) == [("1m", ms(T0) + 60_000_000)]
    assert builder.add([_trade(20, "100", trade_id="3")], now=0.0).too_late == 1


@pytest.mark.parametrize("bad", ["", "1w", "1M", "0s", "s", "1x", "1m,,2q"])
def test_bad_intervals_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        parse_intervals(bad)


def test_intervals_parse_in_order_each_once() -> None:
    assert parse_intervals(" 1s, 1m,5m,1m ") == ("1s", "1m", "5m")
