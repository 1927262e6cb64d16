"""Single-field mutations of the recorded Binance payloads (sandbox/fixtures/binance), and the
normaliser each payload goes through: shared by the enumerated test and the hypothesis fuzz."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from marketdata.codec import encode_bars, encode_ticks
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.binance import normalise
from sandbox import FIXTURES as RECORDINGS

FIXTURES = RECORDINGS / "binance"
RECEIVED = datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
SERVER_TIME = datetime(2024, 3, 1, 12, 1, 30, tzinfo=UTC)

Path_ = tuple[str | int, ...]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _first_seen(_: str, __: int, received_at: datetime) -> datetime:
    return received_at


# What each recorded payload goes through, as the producer calls it.
NORMALISERS: dict[str, tuple[Any, Callable[[Any], object]]] = {
    "trade": (fixture("trade.json"), lambda p: normalise.stream_event(p, RECEIVED)),
    "aggTrade": (fixture("aggTrade.json"), lambda p: normalise.stream_event(p, RECEIVED)),
    "bookTicker": (
        fixture("bookTicker.json"),
        lambda p: normalise.stream_event(p, RECEIVED, _first_seen),
    ),
    "kline": (fixture("kline.json"), lambda p: normalise.stream_event(p, RECEIVED)),
    "rest kline": (
        fixture("klines_rest.json")[0],
        lambda p: normalise.rest_kline("BTCUSDT", "1m", p, SERVER_TIME),
    ),
    "rest trade": (
        fixture("historicalTrades_rest.json")[0],
        lambda p: normalise.rest_trade("BTCUSDT", p, RECEIVED),
    ),
    "rest aggTrade": (
        fixture("aggTrades_rest.json")[0],
        lambda p: normalise.rest_agg_trade("BTCUSDT", p, RECEIVED),
    ),
}


def deep(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth):
        nested = [nested]
    return nested


# One value of each kind a field could wrongly hold, named for the failure message.
REPLACEMENTS: dict[str, Any] = {
    "int": 12345,
    "negative": -1,
    "zero": 0,
    "float": 1.5,
    "nan float": float("nan"),
    "inf float": float("inf"),
    "huge int": 10**30,
    "int of 5000 digits": 10**5000,
    "numeric string": "12345",
    "word": "abc",
    "empty string": "",
    "NaN string": "NaN",
    "Infinity string": "-Infinity",
    "exponent string": "1e999999",
    "huge string": "9" * 100_000,
    "NUL string": "a\x00b",
    "None": None,
    "true": True,
    "false": False,
    "empty list": [],
    "list": [1, "2", None],
    "empty dict": {},
    "dict": {"a": 1},
    "deep nesting": deep(5000),
}


def paths(payload: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every field of a payload, nested ones included."""
    items: Any
    if isinstance(payload, dict):
        items = payload.items()
    elif isinstance(payload, list):
        items = enumerate(payload)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def replaced(payload: Any, path: Path_, value: Any) -> Any:
    copied = copy.deepcopy(payload)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copied


def removed(payload: Any, path: Path_) -> Any:
    copied = copy.deepcopy(payload)
    target = copied
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return copied


def time_units(value: Any) -> dict[str, Any]:
    """A time in other units than it came in: what a venue switching units would send."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 10**11:
        return {}
    return {"seconds": value // 1000, "microseconds": value * 1000, "nanoseconds": value * 10**6,
            "picoseconds": value * 10**9}  # fmt: skip


def mutations() -> Iterator[tuple[str, str, Any]]:
    """(normaliser, description, mutated payload) for every single-field mutation."""
    for name, (payload, _) in NORMALISERS.items():
        for path in list(paths(payload)):
            where = "/".join(map(str, path))
            target = payload
            for step in path:
                target = target[step]
            for kind, value in {**REPLACEMENTS, **time_units(target)}.items():
                yield name, f"{where} = {kind}", replaced(payload, path, value)
            yield name, f"{where} missing", removed(payload, path)
        if isinstance(payload, dict):
            yield name, "extra key", {**payload, "zz": deep(100)}
            if "data" in payload:
                yield name, "extra key in data", replaced(payload, ("data", "zz"), "x")
        else:
            yield name, "extra field", [*payload, deep(100)]
            yield name, "short row", payload[:3]
        for kind in ("int", "word", "None", "list", "empty dict", "deep nesting"):
            yield name, f"payload = {kind}", REPLACEMENTS[kind]


def outcome(name: str, payload: Any) -> str:
    """``records``, ``none`` or ``invalid``; anything else raises from here. Records must also
    encode, since the publisher encodes them next."""
    try:
        result = NORMALISERS[name][1](payload)
    except InvalidRecord:
        return "invalid"
    if result is None:
        return "none"
    records = result if isinstance(result, list) else [result]
    ticks = [r for r in records if isinstance(r, Tick)]
    bars = [r for r in records if isinstance(r, Bar)]
    assert len(ticks) + len(bars) == len(records), f"not records: {records!r:.200}"
    if ticks:
        encode_ticks(ticks)
    if bars:
        encode_bars(bars)
    return "records"
