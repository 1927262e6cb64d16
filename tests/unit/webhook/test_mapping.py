"""The field mapping: its override setting, paths, and random bodies under random mappings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketdata.codec import decode, encode_ticks
from marketdata.errors import ConfigError
from marketdata.records import Tick
from webhook.alert import alert_to_tick, parse_body
from webhook.auth import Rejected
from webhook.mapping import (
    DEFAULT_PATHS,
    FIELDS,
    FieldMap,
    is_missing,
    lookup,
    parse_fields,
    without,
)

NOW = datetime(2025, 6, 2, 14, 5, 3, tzinfo=UTC)


def test_an_override_replaces_only_the_fields_it_names() -> None:
    paths = parse_fields(" price = bar.close | close , symbol=data.ticker")
    assert paths["price"] == ("bar.close", "close")
    assert paths["symbol"] == ("data.ticker",)
    assert paths["size"] == DEFAULT_PATHS["size"]


def test_a_dotted_path_is_nested_first_then_a_literal_key() -> None:
    alert = {"bar": {"close": 1}, "strategy.order.price": 2, "strategy": {"order": "x"}}
    assert (lookup(alert, "bar.close"), lookup(alert, "strategy.order.price")) == (1, 2)


def test_what_became_a_record_field_leaves_the_extras_and_emptied_objects_go() -> None:
    alert = {"bar": {"close": 1}, "strategy": {"order_action": "buy", "order_id": "L"}, "n": 1}
    left = without(alert, ["bar.close", "strategy.order_action"])
    assert left == {"strategy": {"order_id": "L"}, "n": 1}
    assert alert["bar"] == {"close": 1}  # the alert itself is untouched


@pytest.mark.parametrize(
    ("body", "exchange", "symbol"),
    [
        ({"ticker": "binance:btcusdt"}, "BINANCE", "BTCUSDT"),
        ({"ticker": "BINANCE:BTCUSDT", "exchange": "BYBIT"}, "BYBIT", "BTCUSDT"),
        ({"symbol": "ES1!"}, "TV", "ES1!"),
        ({"tickerid": ":AAPL"}, "TV", "AAPL"),
    ],
)
def test_exchange_symbol_strings_and_the_default_exchange(
    body: dict[str, object], exchange: str, symbol: str
) -> None:
    tick = alert_to_tick({**body, "close": "1"}, b"x", NOW, FieldMap.from_setting(None, "tv"))
    assert (tick.exchange, tick.symbol) == (exchange, symbol)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"ticker": "X", "price": {{close}}}', "unfilled placeholder {{close}}"),
        (b'{"ticker": "X", "price": "1", "n": ["a", {"m": "{{ plot_0 }}"}]}',
         "unfilled placeholder {{plot_0}}"),
        (b'{"{{ticker}}": 1}', "unfilled placeholder {{ticker}}"),
        (b'{"ticker": "{{ticker}}", "price": {{close}}}', "unfilled placeholder {{ticker}}"),
    ],
)  # fmt: skip
def test_unfilled_placeholders_are_400_naming_the_first(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_body(body)
    assert caught.value.status == 400
    assert caught.value.reason == f"{reason}: TradingView did not replace it with a value"


_SEGMENTS = st.sampled_from(["price", "close", "bar", "strategy", "order", "ticker", "time",
                             "volume", "action", "x"])  # fmt: skip
_PATH = st.lists(_SEGMENTS, min_size=1, max_size=3).map(".".join)
_SPECS = st.dictionaries(st.sampled_from(FIELDS), st.lists(_PATH, min_size=1, max_size=3),
                         max_size=4).map(
    lambda m: ",".join(f"{k}={'|'.join(v)}" for k, v in m.items()))  # fmt: skip
_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=10),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["61000.5", "buy", "Sell", "BINANCE:BTCUSDT", "2025-06-02T14:00:00Z",
                     "1748872800", "1748872800000", "1999-12-31T23:59:59Z", "NaN", "-1", "1e30"]),
)  # fmt: skip
_BODIES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_SEGMENTS, inner, max_size=4),
    max_leaves=12,
).filter(lambda d: isinstance(d, dict))


def _put(document: dict[str, object], path: str, value: object) -> dict[str, object]:
    """``document`` with ``value`` at ``path`` (objects made, or replacing what was there)."""
    *parents, leaf = path.split(".")
    node = document
    for parent in parents:
        child = node.get(parent)
        node[parent] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[leaf] = value
    return document


def _take(body: bytes, mapping: FieldMap) -> tuple[Tick, dict[str, object]] | Rejected:
    try:
        alert = parse_body(body)
        return alert_to_tick(alert, body, NOW, mapping), alert
    except Rejected as rejected:
        return rejected


@settings(max_examples=1500, deadline=None)
@given(_BODIES, _SPECS, st.sampled_from(["TRADINGVIEW", "x" * 32]), st.data())
@example({"ticker": "BINANCE:BTCUSDT", "bar": {"close": 1.5}}, "price=bar.close|x", "TRADINGVIEW",
         None)  # fmt: skip
def test_random_bodies_under_random_mappings_give_a_carried_tick_or_a_4xx(
    document: dict[str, object], spec: str, default_exchange: str, data: st.DataObject | None
) -> None:
    mapping = FieldMap.from_setting(spec, default_exchange)
    if data is not None and data.draw(st.booleans()):
        # Most random bodies lack a symbol or a price: put both at one of the mapping's paths,
        # so that the accepting half of the mapping is exercised as much as the refusing one.
        for name, values in (("symbol", ["BTCUSDT", "NASDAQ:AAPL", "ES1!"]),
                             ("price", [1, 0.19012, "61000.5", "189.84"])):  # fmt: skip
            path = data.draw(st.sampled_from(mapping.paths[name]))
            document = _put(document, path, data.draw(st.sampled_from(values)))
    body = json.dumps({**document, "passphrase": "p"}).encode()
    outcome = _take(body, mapping)
    if isinstance(outcome, Rejected):
        assert outcome.status in {400, 422}, outcome.reason
        assert outcome.reason.strip()
        return
    tick, alert = outcome
    (carried,) = decode(encode_ticks([tick])).records  # what goes to md.ticks.raw
    assert carried == tick
    assert tick.extras is None or "passphrase" not in tick.extras
    # The price is the value at the first of the price paths that the body has.
    price = next(v for p in mapping.paths["price"] if not is_missing(v := lookup(alert, p)))
    assert tick.price == Decimal(repr(price) if isinstance(price, float) else str(price))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_setting_text_is_a_mapping_or_a_config_error_naming_the_variable(spec: str) -> None:
    try:
        paths = parse_fields(spec)
    except ConfigError as exc:
        error: ConfigError | None = exc
    else:
        error = None
    if error is not None:
        assert str(error).startswith("MDP_WEBHOOK_FIELDS: ")
        return
    assert set(paths) == set(FIELDS)
    assert all(paths[name] for name in FIELDS)


_README_ALERTS = [
    (b'{"passphrase": "p", "symbol": "NASDAQ:AAPL", "close": "189.84", "volume": "52164",'
     b' "time": "2025-03-03T15:59:00Z", "interval": "1", "rsi": "71.92"}',
     ("NASDAQ", "AAPL", "189.84", "52164", None, datetime(2025, 3, 3, 15, 59, tzinfo=UTC)),
     {"interval": "1", "rsi": "71.92"}),
    (b'{"passphrase": "p", "time": "2025-06-02T14:05:03Z", "exchange": "BINANCE",'
     b' "ticker": "DOGEUSDT", "bar": {"time": "2025-06-02T14:00:00Z", "open": 0.18921,'
     b' "high": 0.19033, "low": 0.18874, "close": 0.19012, "volume": 5123409},'
     b' "strategy": {"order_action": "buy", "order_contracts": 1500, "order_price": 0.19012,'
     b' "order_id": "Long", "market_position": "long", "position_size": 1500}}',
     ("BINANCE", "DOGEUSDT", "0.19012", "1500", "buy", NOW),
     {"bar": {"time": "2025-06-02T14:00:00Z", "open": 0.18921, "high": 0.19033, "low": 0.18874,
              "close": 0.19012, "volume": 5123409},
      "strategy": {"order_id": "Long", "market_position": "long", "position_size": 1500}}),
    (b'{"passphrase": "p", "ticker": "ES1!", "price": "5137.25"}',
     ("TRADINGVIEW", "ES1!", "5137.25", "0", None, NOW), None),
]  # fmt: skip


@pytest.mark.parametrize(("body", "fields", "extras"), _README_ALERTS)
def test_the_readme_alert_messages_become_the_ticks_it_says(
    body: bytes, fields: tuple[object, ...], extras: dict[str, object] | None
) -> None:
    alert = parse_body(body)
    alert.pop("passphrase")
    tick = alert_to_tick(alert, body, NOW)
    exchange, symbol, price, size, side, timestamp = fields
    assert (tick.exchange, tick.symbol, tick.side, tick.timestamp) == (
        exchange, symbol, side, timestamp)  # fmt: skip
    assert (tick.price, tick.size) == (Decimal(str(price)), Decimal(str(size)))
    assert tick.extras == extras


def test_a_path_leaves_the_extras_from_where_it_was_found() -> None:
    alert = {"bar": {"close": 1}, "bar.close": 2}
    assert lookup(alert, "bar.close") == 1
    assert without(alert, ["bar.close"]) == {"bar.close": 2}
    assert without({"bar": "x", "bar.close": 2}, ["bar.close"]) == {"bar": "x"}
