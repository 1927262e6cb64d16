"""Hostile alert bodies: every one becomes a tick or a 4xx naming the problem, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from webhook.alert import alert_to_tick, parse_body
from webhook.auth import Rejected

NOW = datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)


def _body(**changes: object) -> bytes:
    document: dict[str, object] = {"ticker": "BTCUSDT", "exchange": "BINANCE",
                                   "price": "61234.5", "time": "2024-03-01T12:00:00Z"}  # fmt: skip
    document.update(changes)
    return json.dumps(document).encode()


def _rejected(body: bytes) -> Rejected:
    with pytest.raises(Rejected) as caught:
        alert_to_tick(parse_body(body), body, NOW)
    return caught.value


@pytest.mark.parametrize("depth", [40, 3_000, 100_000])
@pytest.mark.parametrize(("opening", "closing"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_deep_nesting_is_400_whatever_the_depth(depth: int, opening: bytes, closing: bytes) -> None:
    for body in (
        opening * depth + b"1" + closing * depth,
        _body()[:-1] + b', "deep": ' + opening * depth + b"1" + closing * depth + b"}",
    ):
        with pytest.raises(Rejected) as caught:
            parse_body(body)
        assert caught.value.status == 400
        assert "nested deeper than" in caught.value.reason


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (1e15, datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)),  # microseconds, by the kernel's rule
        (1709294400, datetime(2024, 3, 1, 12, tzinfo=UTC)),  # seconds, no longer read as ms
        (1709294400.25, datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        (1709294400000, datetime(2024, 3, 1, 12, tzinfo=UTC)),  # milliseconds
        ("1709294400000", datetime(2024, 3, 1, 12, tzinfo=UTC)),  # str.tostring(time) in Pine
        ("2024-03-01T13:00:00+01:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
    ],
)
def test_epoch_numbers_follow_the_kernel_rule(time: object, expected: datetime) -> None:
    body = _body(time=time)
    assert alert_to_tick(parse_body(body), body, NOW).timestamp == expected


@pytest.mark.parametrize(
    ("time", "words"),
    [
        (1e20, "time: epoch number too large"),
        (-1, "time: epoch s -1 is outside"),
        (True, "time: "),
        ([1709294400], "time: "),
        ({"t": 1}, "time: "),
        (None, "time: required"),
        ("2024-03-01T12:00:00", "time: naive"),
        ("2024-03-01", "time: naive"),
        ("0001-01-01T00:00:00+01:00", "time: out of range"),
        ("9999-12-31T23:59:59-01:00", "time: out of range"),
        ("2100-01-01T00:00:00Z", "time: out of range"),
        ("1969-12-31T23:59:59Z", "time: out of range"),
        ("2024-03-01T12:00:00Z" + "0" * 100, "time: not an ISO 8601 time (120 characters)"),
        ("yesterday", "time: "),
        ("1" * 50, "time: "),
    ],
)
def test_bad_times_are_422_naming_time(time: object, words: str) -> None:
    rejected = _rejected(_body(time=time))
    assert rejected.status == 422
    assert rejected.reason.startswith(words), rejected.reason


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"price": "1." + "0" * 20_000}, "price: "),  # the sink could never store it
        ({"price": "1e400"}, "price: "),
        ({"price": 10**30}, "price: magnitude"),
        ({"price": 1e300}, "price: magnitude"),
        ({"price": "NaN"}, "price: "),
        ({"price": "sNaN"}, "price: "),
        ({"price": "-Infinity"}, "price: "),
        ({"price": [1]}, "price: must be a number"),
        ({"volume": {"a": 1}}, "volume: must be a number"),
        ({"volume": "1" * 40}, "volume: "),
        ({"id": "x" * 3_000}, "id: longer than 256"),  # over the btree index entry
        ({"id": {"a": 1}}, "id: must be a string or an integer"),
        ({"id": ["x"]}, "id: must be a string or an integer"),
        ({"id": True}, "id: must be a string or an integer"),
        ({"ticker": "X" * 3_000}, "ticker: longer than 128"),
        ({"exchange": "X" * 100}, "exchange: longer than 32"),
        ({"ticker": "A\u0000B"}, "ticker: must not contain NUL"),
        ({"side": ["buy"]}, "side: must be buy or sell"),
        ({"side": {"a": 1}}, "side: must be buy or sell"),
        ({"side": 1}, "side: must be buy or sell"),
        ({"extra": "x" * 20_000}, "extras: "),
        ({"extra": [[[[[[[[[1]]]]]]]]]}, "extras: nested deeper"),
    ],
)  # fmt: skip
def test_values_storage_cannot_hold_are_422_naming_the_alert_field(
    changes: dict[str, object], words: str
) -> None:
    rejected = _rejected(_body(**changes))
    assert rejected.status == 422
    assert rejected.reason.startswith(words), rejected.reason


@pytest.mark.parametrize(
    "body",
    [
        b'{"ticker":"X","exchange":"X","price":1e400,"time":1709294400}',
        b'{"ticker":"X","exchange":"X","price":"1","time":' + b"9" * 5_000 + b"}",
        b'{"ticker":"\xff","exchange":"X","price":"1","time":1709294400}',
        b'{"ticker":"\\ud800","exchange":"X","price":"1","time":1709294400}',
    ],
)
def test_numbers_and_text_json_cannot_carry_are_400(body: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_body(body)
    assert caught.value.status == 400
    assert caught.value.reason.startswith("malformed JSON")
