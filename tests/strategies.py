"""Hypothesis strategies for valid records, shared by the unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from marketdata.records import EARLIEST, LATEST, Bar, Tick

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=24,
)
timestamps = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None),
    max_value=LATEST.replace(tzinfo=None) - timedelta(microseconds=1),
    timezones=st.just(UTC),
)
prices = st.decimals(
    min_value=Decimal("-1e6"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False,
    places=8,
)  # fmt: skip
sizes = st.decimals(min_value=Decimal(0), max_value=Decimal("1e12"), allow_nan=False, places=8)
# PostgreSQL text and jsonb cannot hold NUL; such records are invalid by contract.
storable_text = st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"])
extras = st.none() | st.dictionaries(
    st.text(storable_text, max_size=10),
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(storable_text, max_size=20),
    max_size=4,
)
intervals = st.sampled_from(["1s", "1m", "3m", "5m", "15m", "1h", "4h", "1d", "1w", "1M"])

ticks = st.builds(
    Tick,
    exchange=names,
    symbol=names,
    timestamp=timestamps,
    source=names,
    trade_id=names,
    price=prices,
    size=sizes,
    side=st.sampled_from(["buy", "sell", "bid", "ask", None]),
    received_at=timestamps,
    extras=extras,
)


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    low = draw(prices)
    high = low + draw(sizes)
    between = st.decimals(min_value=low, max_value=high, allow_nan=False, places=8)
    return Bar(
        exchange=draw(names),
        symbol=draw(names),
        interval=draw(intervals),
        timestamp=draw(timestamps),
        open=draw(between),
        high=high,
        low=low,
        close=draw(between),
        volume=draw(sizes),
        trade_count=draw(st.none() | st.integers(0, 2**40)),
        closed=draw(st.booleans()),
        source=draw(names),
    )


def sample_tick(**changes: object) -> Tick:
    """A realistic Binance trade, with any field replaced."""
    fields: dict[str, object] = {
        "exchange": "BINANCE",
        "symbol": "BTCUSDT",
        "timestamp": datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "source": "binance.trade",
        "trade_id": "3417562101",
        "price": Decimal("61234.56000000"),
        "size": Decimal("0.00150000"),
        "side": "sell",
        "received_at": datetime(2024, 3, 1, 12, 0, 0, 130001, tzinfo=UTC),
        "extras": {"buyer_maker": True},
    }
    fields.update(changes)
    return Tick(**fields)  # type: ignore[arg-type]


def sample_bar(**changes: object) -> Bar:
    """A realistic closed one-minute Binance kline, with any field replaced."""
    fields: dict[str, object] = {
        "exchange": "BINANCE",
        "symbol": "BTCUSDT",
        "interval": "1m",
        "timestamp": datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        "open": Decimal("61200.00"),
        "high": Decimal("61250.10"),
        "low": Decimal("61190.00"),
        "close": Decimal("61234.56"),
        "volume": Decimal("12.3456"),
        "trade_count": 412,
        "closed": True,
        "source": "binance.kline",
    }
    fields.update(changes)
    return Bar(**fields)  # type: ignore[arg-type]
