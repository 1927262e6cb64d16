from __future__ import annotations

import pytest

from marketdata.errors import MarketDataError
from producers.binance.live import stream_names


def test_stream_names_are_binances() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"], ["trade", "kline_1m"]) == [
        "btcusdt@trade", "btcusdt@kline_1m", "ethusdt@trade", "ethusdt@kline_1m"
    ]  # fmt: skip


def test_more_streams_than_one_connection_takes_is_a_clear_error() -> None:
    symbols = [f"SYM{n}" for n in range(513)]
    with pytest.raises(MarketDataError, match="1026 streams: Binance takes at most 1024"):
        stream_names(symbols, ["trade", "bookTicker"])
