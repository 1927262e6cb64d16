from __future__ import annotations

from marketdata.topics import Topics, instrument_key


def test_topic_names_and_prefix() -> None:
    assert Topics().all() == ("md.ticks.raw", "md.bars.raw", "md.ticks", "md.bars", "md.dlq")
    assert Topics("test-1.").all() == (
        "test-1.md.ticks.raw",
        "test-1.md.bars.raw",
        "test-1.md.ticks",
        "test-1.md.bars",
        "test-1.md.dlq",
    )


def test_instrument_key_is_exchange_colon_symbol() -> None:
    assert instrument_key("BINANCE", "BTCUSDT") == b"BINANCE:BTCUSDT"
    assert instrument_key("CME", "ESZ6") != instrument_key("CME", "ESH7")
