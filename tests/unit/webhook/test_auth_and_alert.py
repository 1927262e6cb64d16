from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from webhook.alert import alert_to_tick, parse_body
from webhook.auth import (
    Rejected,
    check_source,
    parse_networks,
    sign,
    source_address,
    take_passphrase,
    verify_signature,
)

SECRET = b"0123456789abcdef-secret"
BODY = b'{"ticker":"BTCUSDT","exchange":"BINANCE","price":"61234.5","time":"2024-03-01T12:00:00Z"}'
NOW = datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("prefix", ["", "sha256="])
def test_a_good_signature_passes_with_or_without_prefix(prefix: str) -> None:
    verify_signature(BODY, prefix + sign(BODY, SECRET), SECRET)
    verify_signature(BODY, prefix + sign(BODY, SECRET).upper(), SECRET)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing X-Signature"),
        ("", "missing X-Signature"),
        ("sha1=" + sign(BODY, SECRET), "bad X-Signature"),
        (sign(BODY + b" ", SECRET), "bad X-Signature"),
        (sign(BODY, b"another-secret-of-length"), "bad X-Signature"),
    ],
)
def test_bad_signatures_are_401(header: str | None, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        verify_signature(BODY, header, SECRET)
    assert (caught.value.status, caught.value.reason) == (401, reason)


@given(st.binary(max_size=300), st.text(max_size=80))
def test_no_random_header_verifies_a_random_body(body: bytes, header: str) -> None:
    if header.strip().removeprefix("sha256=").lower() == sign(body, SECRET):
        return  # astronomically unlikely: the right signature
    with pytest.raises(Rejected):
        verify_signature(body, header, SECRET)


def test_the_passphrase_is_checked_and_removed() -> None:
    alert = {"ticker": "X", "passphrase": "open sesame"}
    take_passphrase(alert, b"open sesame")
    assert "passphrase" not in alert
    for wrong in ({"passphrase": "nope"}, {}, {"passphrase": 12}):
        with pytest.raises(Rejected) as caught:
            take_passphrase(dict(wrong), b"open sesame")
        assert caught.value.status == 401


def test_source_allow_list_and_proxy_header() -> None:
    networks = parse_networks("tradingview,10.0.0.0/8")
    check_source("52.89.214.238", networks)
    check_source("10.1.2.3", networks)
    for bad in ("8.8.8.8", "not-an-ip", ""):
        with pytest.raises(Rejected) as caught:
            check_source(bad, networks)
        assert caught.value.status == 403
    assert source_address("127.0.0.1", None) == "127.0.0.1"  # untrusted by default
    assert source_address("127.0.0.1", []) == "127.0.0.1"  # the proxy sent none
    assert source_address("127.0.0.1", ["1.2.3.4, 52.89.214.238"]) == "52.89.214.238"


@pytest.mark.parametrize(
    ("lines", "client"),
    [
        # The client wrote the first line; the proxy added its own line for the real peer.
        ([(b"x-forwarded-for", b"52.89.214.238"), (b"x-forwarded-for", b"8.8.8.8")], "8.8.8.8"),
        ([(b"x-forwarded-for", b"52.89.214.238, 10.0.0.1"), (b"x-forwarded-for", b" 8.8.8.8 ")],
         "8.8.8.8"),
        ([(b"x-forwarded-for", b"8.8.8.8"), (b"x-forwarded-for", b"52.89.214.238")],
         "52.89.214.238"),
        ([(b"x-forwarded-for", b"52.89.214.238,")], ""),  # nothing where the proxy writes
    ],
)  # fmt: skip
def test_repeated_proxy_header_lines_count_as_one_list(
    lines: list[tuple[bytes, bytes]], client: str
) -> None:
    headers = Headers(raw=lines)
    assert source_address("127.0.0.1", headers.getlist("X-Forwarded-For")) == client


def test_an_alert_becomes_a_tick_with_extras_and_a_stable_id() -> None:
    body = json.dumps({"ticker": "btcusdt", "exchange": "binance", "price": 61234.5,
                       "volume": "2", "time": 1709294400000, "side": "buy",
                       "strategy": "breakout"}).encode()  # fmt: skip
    tick = alert_to_tick(parse_body(body), body, NOW)
    assert (tick.exchange, tick.symbol, tick.source, tick.side) == (
        "BINANCE", "BTCUSDT", "TradingView", "buy")  # fmt: skip
    assert tick.timestamp == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert (tick.price, tick.size) == (Decimal("61234.5"), Decimal(2))
    assert tick.extras == {"strategy": "breakout"}
    assert tick.trade_id == alert_to_tick(parse_body(body), body, NOW).trade_id


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"exchange":"X","price":"1","time":"2024-03-01T12:00:00Z"}', 422, "ticker"),
        (b'{"ticker":"X","exchange":"X","price":"abc","time":"2024-03-01T12:00:00Z"}', 422,
         "price"),
        (b'{"ticker":"X","exchange":"X","price":true,"time":"2024-03-01T12:00:00Z"}', 422,
         "price"),
        (b'{"ticker":"X","exchange":"X","price":"1","time":"yesterday"}', 422, "time"),
        (b'{"ticker":"X","exchange":"X","price":"1","time":"2024-03-01T12:00:00"}', 422,
         "time: naive"),
        (b'{"ticker":"X","exchange":"X","price":"1","volume":"-1","time":1709294400000}', 422,
         "volume: must not be negative"),
        (b'{"ticker":"X","exchange":"X","price":"1","side":"long","time":1709294400000}', 422,
         "side"),
    ],
)  # fmt: skip
def test_bad_alerts_name_the_problem(body: bytes, status: int, words: str) -> None:
    with pytest.raises(Rejected) as caught:
        alert_to_tick(parse_body(body), body, NOW)
    assert caught.value.status == status
    assert words in caught.value.reason
