"""The codec under the poison corpus: every input decodes to records or raises DecodeError."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from marketdata.codec import decode, encode_bars, encode_ticks
from marketdata.errors import DecodeError
from tests import poison
from tests.strategies import sample_bar, sample_tick

TICKS = json.loads(encode_ticks([sample_tick(), sample_tick(trade_id="2", side=None)]))
BARS = json.loads(encode_bars([sample_bar()]))


def _outcome(data: bytes) -> str:
    try:
        batch = decode(data)
    except DecodeError as exc:
        reason = exc.reason
    else:
        return "records" if batch.records else "empty batch"
    # A reason travels as a Kafka header: present, and short whatever the input.
    return "dead letter" if 0 < len(reason) < 1_000 else f"bad reason of {len(reason)} chars"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=poison.poisoned_json(TICKS) | poison.poisoned_json(BARS))
def test_decode_is_total_under_structure_aware_mutations(data: bytes) -> None:
    assert _outcome(data) in {"records", "dead letter"}


@pytest.mark.parametrize(
    ("path", "fragment", "reason"),
    [
        (("records", 0, "price"), poison.LONG_DECIMAL, "significant digits"),
        (("records", 0, "trade_id"), poison.LONG_KEY_TEXT,
         "trade_id: Expected `str` of length <= 256"),
        (("records", 0, "symbol"), poison.LONG_KEY_TEXT,
         "symbol: Expected `str` of length <= 128"),
        (("records", 0, "extras"), b'{"deep":' + poison.DEEP_ARRAYS + b"}", "nested too deeply"),
        (("records", 0, "extras"), poison.DEEP_OBJECTS, "nested too deeply"),
        (("records", 0, "extras"), b'{"n":' + poison.BIG_INT + b"}", "out of range"),
        (("records", 0, "timestamp"), poison.MICROSECONDS, "Expected `datetime`"),
        (("records", 0, "timestamp"), b'"0001-01-01T00:00:00+14:00"', "out of range"),
        (("records",), poison.DEEP_ARRAYS, "got `array` - at `$.records[0]`"),
        ((), poison.DEEP_ARRAYS, "Expected `object`"),
    ],
)  # fmt: skip
def test_the_issues_poisons_are_dead_letters_with_a_reason(
    path: tuple[object, ...], fragment: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(poison.splice(TICKS, path, fragment))
    assert reason in caught.value.reason


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode(b" " * (16 * 1024 * 1024 + 1))
