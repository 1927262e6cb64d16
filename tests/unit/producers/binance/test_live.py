from __future__ import annotations

from producers.binance.live import stream_names


def test_stream_names_are_binances() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"], ["trade", "kline_1m"]) == [
        ["btcusdt@trade", "btcusdt@kline_1m", "ethusdt@trade", "ethusdt@kline_1m"]
    ]


def test_more_streams_than_one_connection_takes_are_split_by_symbol() -> None:
    symbols = [f"SYM{n}" for n in range(700)]
    groups = stream_names(symbols, ["trade", "bookTicker"])
    assert [len(group) for group in groups] == [1024, 376]
    assert groups[0][-2:] == ["sym511@trade", "sym511@bookTicker"]
    assert [name for group in groups for name in group] == [
        f"sym{n}@{k}" for n in range(700) for k in ("trade", "bookTicker")
    ]
