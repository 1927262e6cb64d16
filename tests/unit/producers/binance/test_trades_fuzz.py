"""The trades pagers are total over what Binance answers: a structure-aware mutation of a page of
the recorded ``aggTrades`` / ``historicalTrades`` rows (tests/poison.py) gives pages of trades
and rejected rows, or the one documented error (BinanceRestError), never another exception; and
no trade outside the range asked for is published."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.binance.connector import RestClient
from producers.binance.history import BinanceRest, BinanceRestError
from producers.binance.trades import Kind, TradePager
from sandbox import FIXTURES
from tests import poison

_AGG = json.loads((FIXTURES / "binance" / "aggTrades_rest.json").read_text())[0]
_TRADE = json.loads((FIXTURES / "binance" / "historicalTrades_rest.json").read_text())[0]
AGG_PAGE = [{**_AGG, "a": _AGG["a"] + n, "f": _AGG["f"] + 2 * n, "l": _AGG["f"] + 2 * n + 1,
             "T": _AGG["T"] + n} for n in range(3)]  # fmt: skip
TRADE_PAGE = [{**_TRADE, "id": _AGG["f"] + n, "time": _AGG["T"] + n // 2} for n in range(6)]
FIRST = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=_AGG["T"])
START, END = FIRST - timedelta(minutes=10), FIRST + timedelta(milliseconds=4)
NOW = FIRST + timedelta(days=1)


class Answers:
    """A REST client answering with ``answers`` one call after another (as binance-connector
    hands them over: decoded JSON, or the text it could not decode), then empty pages."""

    def __init__(self, *answers: bytes) -> None:
        self.session = requests.Session()
        self.answers = list(answers)

    def _next(self, *_: Any, **__: Any) -> Any:
        if not self.answers:
            return []
        text = self.answers.pop(0)
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text.decode(errors="replace")

    time = klines = _next
    agg_trades = historical_trades = _next


def pages(kind: Kind, *answers: bytes) -> list[Any]:
    client = cast(RestClient, Answers(*answers))
    pager = TradePager(BinanceRest(client, max_attempts=1), "BTCUSDT", kind, START, END)
    try:
        found = list(pager.pages(NOW))
    except BinanceRestError:
        return []
    ticks = [tick for page, _ in found for tick in page]
    assert all(START <= tick.timestamp <= END for tick in ticks)
    return found


def good(kind: Kind) -> list[Any]:
    return pages(kind, json.dumps(AGG_PAGE).encode(), json.dumps(TRADE_PAGE).encode())


def test_the_recorded_pages_give_their_trades() -> None:
    # The control: unmutated, the aggregate trades of the range, or the trades by id after them.
    agg = [(t.trade_id, t.timestamp) for page, _ in good("aggTrades") for t in page]
    assert agg == [(str(_AGG["a"] + n), FIRST + timedelta(milliseconds=n)) for n in range(3)]
    trades = [t.trade_id for page, _ in good("trades") for t in page]
    assert trades == [str(_AGG["f"] + n) for n in range(6)]


_fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(kind=st.sampled_from(["trades", "aggTrades"]), window=poison.poisoned_json(AGG_PAGE))
def test_a_mutated_window_page_gives_trades_or_the_documented_error(
    kind: Kind, window: bytes
) -> None:
    for page, rejected in pages(kind, window, json.dumps(TRADE_PAGE).encode()):
        assert all(reason for _, reason in rejected)
        assert all(tick.symbol == "BTCUSDT" for tick in page)


@_fuzz
@given(by_id=poison.poisoned_json(TRADE_PAGE))
def test_a_mutated_page_by_id_gives_trades_or_the_documented_error(by_id: bytes) -> None:
    found = pages("trades", json.dumps(AGG_PAGE).encode(), by_id)
    for page, rejected in found:
        assert all(reason for _, reason in rejected)
        assert all(tick.source == "binance.trade" for tick in page)
