from __future__ import annotations

import pytest
from ib_async import Contract, Crypto, Forex, Future, Stock

from marketdata.errors import ConfigError
from producers.ibkr.contracts import parse_spec, parse_specs, record_symbol


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STK:AAPL:SMART:USD", Stock("AAPL", "SMART", "USD")),
        ("stk:aapl:smart:usd", Stock("AAPL", "SMART", "USD")),
        ("FUT:ES:CME:USD:202412", Future("ES", "202412", "CME", currency="USD")),
        ("FUT:ESZ4:CME:USD", Future(localSymbol="ESZ4", exchange="CME", currency="USD")),
        ("CASH:EUR:IDEALPRO:USD", Forex("EURUSD", exchange="IDEALPRO")),
        ("CRYPTO:BTC:PAXOS:USD", Crypto("BTC", "PAXOS", "USD")),
    ],
)
def test_specs_become_the_contracts_ib_expects(text: str, expected: Contract) -> None:
    spec = parse_spec(text)
    assert spec.contract() == expected
    assert spec.text == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("AAPL", "expected TYPE:SYMBOL:EXCHANGE:CURRENCY"),
        ("STK:AAPL::USD", "expected TYPE:SYMBOL:EXCHANGE:CURRENCY"),
        ("OPT:AAPL:SMART:USD", "type must be one of STK, FUT, CASH, CRYPTO"),
        ("STK:AAPL:SMART:USD:202412", "expiry (YYYYMM[DD]) is for futures only"),
        ("FUT:ES:CME:USD:2024", "expiry (YYYYMM[DD]) is for futures only"),
        ("STK:AA;PL:SMART:USD", "bad symbol"),
    ],
)
def test_bad_specs_say_what_is_wrong_and_name_the_spec(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_spec(text)
    assert words in str(caught.value)
    assert repr(text) in str(caught.value)


def test_a_list_drops_duplicates_and_keeps_order() -> None:
    specs = parse_specs("STK:MSFT:SMART:USD, STK:AAPL:SMART:USD,stk:msft:smart:usd")
    assert [s.symbol for s in specs] == ["MSFT", "AAPL"]
    with pytest.raises(ConfigError, match="no instruments given"):
        parse_specs(" , ")


def test_records_are_named_by_the_local_symbol_once_qualified() -> None:
    assert record_symbol(Future("ES", "202412", "CME", localSymbol="ESZ4")) == "ESZ4"
    assert record_symbol(Stock("AAPL", "SMART", "USD")) == "AAPL"
