"""Differential tests: validation moved into the decoder accepts exactly what it used to.

``oracle_records.py`` keeps the checks as they were (a plain typed decode, then every rule in
Python). Hypothesis draws values across every kind of breakage (wrong types, subclasses, huge
and tiny numbers, exponents, negative zero, long text around each limit, whitespace of every
kind, NUL, lone surrogates, other time zones and years at the edges, deep and wide extras) for
the two ways a record comes to be: built by a producer (``Tick(...)``, ``Bar(...)``,
``msgspec.structs.replace``) and decoded from JSON by ``marketdata.codec.decode``. Each time the
new code must accept exactly what the oracle accepts and build an equal record (same values,
same types, same representation of every decimal); a built record must fail with the oracle's
very error, and a dead letter's reason must name the field the oracle names.
"""

from __future__ import annotations

import enum
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.codec import decode, encode_bars, encode_ticks
from marketdata.errors import DecodeError, InvalidRecord
from marketdata.records import Bar, Tick
from tests import poison
from tests.strategies import sample_bar, sample_tick
from tests.unit.marketdata.oracle_records import OracleBar, OracleTick, oracle_decoder

EXAMPLES = settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Text(str):
    """A str subclass: records hold exact str."""


class Moment(datetime):
    """A datetime subclass (pandas' Timestamp is one): accepted, as before."""


class Number(Decimal):
    """A Decimal subclass: records hold exact Decimal."""


class Code(enum.IntEnum):
    ONE = 1


# --- Python values, for records built by producers ---------------------------------------------

SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2028\u2029\u3000"
ODD = "\x00\ud800\udbff\udc00\udfff\x7f€😀\u200b"
_short = st.text(max_size=6)
_lengths = [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 3_000]
texts: st.SearchStrategy[object] = st.one_of(
    st.text(alphabet=st.sampled_from(list(SPACES)), max_size=4),
    st.text(max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "€", "😀", " ", "\x00"]),
              st.sampled_from(_lengths)),
    st.builds(lambda a, odd, b: a + odd + b, _short, st.sampled_from(list(ODD)), _short),
    st.builds(Text, _short),
    st.sampled_from([None, 7, 1.5, b"BINANCE", ["BTCUSDT"], True, Decimal(1)]),
)  # fmt: skip

_DECIMAL_EDGES = [
    "-0", "0", "0E-30", "0E-24", "0E-25", "-0.000", "0E+5", "1e29", "-1e29", "1e30", "-1e30",
    "9" * 29 + "." + "9" * 9, "9" * 30, "1." + "0" * 23, "1." + "0" * 24, "1." + "0" * 25,
    "0." + "0" * 23 + "1", "1e-24", "1e-25", "1E-7", "1E+2", "NaN", "-NaN", "sNaN", "NaN123",
    "Infinity", "-Infinity", "1" * 38, "1" * 39, "0." + "1" * 24, "0." + "1" * 25,
    "1" * 26, "-" + "1" * 25, "1.5", "61234.56000000", "0.00150000", "-37.63",
]  # fmt: skip
decimal_texts = st.one_of(
    st.sampled_from(_DECIMAL_EDGES),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    # plain notation around every limit: digits, scale, magnitude and the fast path's length
    st.builds(lambda sign, whole, frac: sign + "7" * whole + ("." + "3" * frac if frac else ""),
              st.sampled_from(["", "-"]), st.integers(1, 32), st.integers(0, 28)),
    st.builds(lambda sign, digits, exponent: f"{sign}{digits}E{exponent}",
              st.sampled_from(["", "-"]), st.integers(0, 10**45), st.integers(-45, 45)),
)  # fmt: skip
decimals: st.SearchStrategy[object] = st.one_of(
    decimal_texts.map(Decimal),
    decimal_texts.map(Decimal),
    decimal_texts.map(Number),
    st.sampled_from([1.5, 3, "1.5", None, float("nan"), True]),
)

zones = st.one_of(
    st.just(UTC),
    st.just(timezone(timedelta(0))),
    st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m))),
)
_naive = st.one_of(
    st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2100, 1, 2)),
    st.datetimes(),
    st.sampled_from([
        datetime(1970, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999_999),
        datetime(2099, 12, 31, 23, 59, 59, 999_999), datetime(2100, 1, 1),
        datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59),
    ]),
)  # fmt: skip
times: st.SearchStrategy[object] = st.one_of(
    st.builds(lambda d, z: d.replace(tzinfo=z), _naive, zones),
    st.builds(lambda d, z: d.replace(tzinfo=z), _naive, zones),
    _naive,
    st.builds(lambda d, z: Moment.combine(d.date(), d.time(), z), _naive, zones),
    st.sampled_from([1_709_294_400, "2024-03-01T12:00:00Z", None]),
)
sides: st.SearchStrategy[object] = st.sampled_from(
    ["buy", "sell", "bid", "ask", None, "BUY", "long", "", Text("buy"), 1, ["buy"]]
)

_INT_EDGES = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 0, -1]
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.sampled_from(_INT_EDGES),
    st.floats(),
    st.text(max_size=12),
    st.builds(lambda a, odd: a + odd, _short, st.sampled_from(list(ODD))),
    st.sampled_from([Code.ONE, Text("x"), b"x", Decimal(1), (1, 2), {1, 2}]),
    st.sampled_from([datetime(2024, 1, 1, tzinfo=UTC)]),
)
_keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["k\x00", "\ud800", "€", 1, None, Text("k"), (1,), True]),
)
_plain_extras = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


def _nested(depth: int, leaf: object = 0) -> object:
    value: object = leaf
    for _ in range(depth - 1):
        value = {"a": value}
    return value


_big_extras = st.one_of(
    st.integers(6, 10).map(_nested),
    st.integers(6, 10).map(lambda depth: _nested(depth, [1])),
    st.sampled_from([995, 996, 997, 998, 999]).map(lambda n: {"many": list(range(n))}),
    st.sampled_from([63, 64, 65, 499, 500]).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.sampled_from([16_382, 16_383, 16_384]).map(lambda n: {"t": "x" * n}),
    st.sampled_from([16_382, 16_383, 16_384]).map(lambda n: {"t": "x" * n, "u": None}),
    st.sampled_from([16_383, 16_384]).map(lambda n: {"x" * n: True}),
)
extras: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.dictionaries(_keys, _plain_extras, max_size=5),
    st.dictionaries(st.text(max_size=8), _leaves, max_size=5),
    _big_extras,
    _plain_extras,
)
intervals: st.SearchStrategy[object] = st.one_of(
    st.sampled_from([
        "1s", "1m", "3m", "5m", "15m", "30m", "1h", "4h", "12h", "1d", "3d", "1w", "1M", "2M",
        "999999m", "1000000m", "0m", "1m\n", " 1m", "1 m", "1mm", "1y", "m", "", "1", "\uff11m",
        "\u0663m", "1" * 15 + "m", "1" * 16 + "m", Text("1m"), 1, None,
    ]),
    texts,
)  # fmt: skip
trade_counts: st.SearchStrategy[object] = st.one_of(
    st.none(), st.integers(-5, 2**40), st.sampled_from(_INT_EDGES),
    st.sampled_from([True, 1.0, "1", Code.ONE]),
)  # fmt: skip
closeds: st.SearchStrategy[object] = st.sampled_from([True, False, 0, 1, "true", None])

TICK_VALUES: dict[str, st.SearchStrategy[object]] = {
    "exchange": texts, "symbol": texts, "source": texts, "trade_id": texts, "timestamp": times,
    "received_at": times, "price": decimals, "size": decimals, "side": sides, "extras": extras,
}  # fmt: skip
BAR_VALUES: dict[str, st.SearchStrategy[object]] = {
    "exchange": texts, "symbol": texts, "source": texts, "interval": intervals,
    "timestamp": times, "open": decimals, "high": decimals, "low": decimals, "close": decimals,
    "volume": decimals, "trade_count": trade_counts, "closed": closeds,
    "vwap": decimals | st.none(),
}  # fmt: skip


def _fields(record: msgspec.Struct) -> list[tuple[type, str]]:
    """Every value with its type and exact representation (1.50 is not 1.5, +01:00 not UTC)."""
    return [(type(value), repr(value)) for value in msgspec.structs.astuple(record)]


def _built(kind: type[msgspec.Struct], fields: dict[str, object]) -> msgspec.Struct | str:
    try:
        return kind(**fields)
    except InvalidRecord as exc:
        return f"InvalidRecord({exc.field!r}, {exc.problem!r})"


def _same_outcome(new: msgspec.Struct | str, old: msgspec.Struct | str) -> None:
    if isinstance(old, str) or isinstance(new, str):
        assert new == old
    else:
        assert _fields(new) == _fields(old)


@st.composite
def _changes(draw: st.DrawFn, values: dict[str, st.SearchStrategy[object]]) -> dict[str, object]:
    names = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2, unique=True))
    return {name: draw(values[name]) for name in names}


def _tick_fields(**changes: object) -> dict[str, object]:
    return {**msgspec.structs.asdict(sample_tick()), **changes}


def _bar_fields(**changes: object) -> dict[str, object]:
    return {**msgspec.structs.asdict(sample_bar()), **changes}


_EDGE_EXTRAS: list[object] = [
    {"k\x00": 1}, {"\ud800": 1}, {"k": "\x00"}, {"k": "\udfff"}, {"k": ["\x00"]}, {1: 2},
    {None: 1}, {Text("k"): 1}, {"k": Text("v")}, {"k": Code.ONE}, {"f": float("nan")},
    {"f": float("inf")}, {"f": -0.0}, {"n": 2**63}, {"n": -(2**63)}, {"n": 2**63 - 1},
    {"n": -(2**63) - 1}, {"k": (1,)}, {"k": b"x"}, {"k": Decimal(1)}, {"€": "é"}, {"k": "€\x00"},
    {"k": {"k\x00": 1}}, {"k": [1.5, None, True]}, [1], "x", 1, {"k": {1, 2}},
]  # fmt: skip
_TICK_EDGES = [
    *(("extras", value) for value in _EDGE_EXTRAS),
    *(("price", Decimal(text)) for text in _DECIMAL_EDGES),
    *(("size", Decimal(text)) for text in _DECIMAL_EDGES),
    *((field, text) for field in ("symbol", "trade_id") for text in [*SPACES, *ODD, "a" + ODD]),
    ("symbol", "€" * 128), ("symbol", "€" * 129), ("trade_id", "😀" * 256),
    ("timestamp", Moment(2024, 1, 1, tzinfo=UTC)), ("timestamp", Moment(2024, 1, 1)),
    ("timestamp", datetime(1969, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))),
    ("received_at", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
    ("received_at", datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=-14)))),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), _TICK_EDGES)
def test_the_edges_of_a_built_tick_are_checked_as_before(field: str, value: object) -> None:
    fields = _tick_fields(**{field: value})
    _same_outcome(_built(Tick, fields), _built(OracleTick, fields))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *(("volume", Decimal(text)) for text in _DECIMAL_EDGES),
        *(("interval", value) for value in ["1m\n", "\u0661m", "0m", "999999m", "1000000m", "1M"]),
        *(("trade_count", value) for value in [*_INT_EDGES, True, 1.0, Code.ONE]),
        ("low", Decimal("61190.000000000000000000000")), ("high", Decimal("6.125010E+4")),
        *(("vwap", Decimal(text)) for text in _DECIMAL_EDGES),
        *(("vwap", value) for value in [Decimal("61190.00"), Decimal("61250.100"),
                                        Decimal("61250.11"), Decimal("61189.99"), 61200, None]),
    ],
)  # fmt: skip
def test_the_edges_of_a_built_bar_are_checked_as_before(field: str, value: object) -> None:
    fields = _bar_fields(**{field: value})
    _same_outcome(_built(Bar, fields), _built(OracleBar, fields))


@EXAMPLES
@given(_changes(TICK_VALUES))
def test_a_built_tick_is_accepted_or_refused_exactly_as_before(changes: dict[str, Any]) -> None:
    fields = _tick_fields(**changes)
    _same_outcome(_built(Tick, fields), _built(OracleTick, fields))


@EXAMPLES
@given(_changes(BAR_VALUES))
def test_a_built_bar_is_accepted_or_refused_exactly_as_before(changes: dict[str, Any]) -> None:
    fields = _bar_fields(**changes)
    _same_outcome(_built(Bar, fields), _built(OracleBar, fields))


@EXAMPLES
@given(st.data())
def test_a_replaced_record_is_checked_exactly_as_before(data: st.DataObject) -> None:
    is_tick = data.draw(st.booleans())
    changes = data.draw(_changes(TICK_VALUES if is_tick else BAR_VALUES))
    new, old = (sample_tick(), OracleTick) if is_tick else (sample_bar(), OracleBar)
    try:
        replaced: msgspec.Struct | str = msgspec.structs.replace(new, **changes)
    except InvalidRecord as exc:
        replaced = f"InvalidRecord({exc.field!r}, {exc.problem!r})"
    fields = {**msgspec.structs.asdict(new), **changes}
    _same_outcome(replaced, _built(old, fields))


# --- JSON, for records decoded by consumers ----------------------------------------------------


def _dumped(value: object) -> bytes:
    return json.dumps(value).encode()


def _raw_utf8(text: str) -> bytes:
    # Unescaped UTF-8 (a lone surrogate becomes bytes that are not UTF-8 at all).
    return b'"' + json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass") + b'"'


_json_texts = st.one_of(
    st.text(max_size=40).map(_dumped),
    st.text(alphabet=st.sampled_from(list(SPACES)), max_size=4).map(_dumped),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "€", "😀", " "]),
              st.sampled_from(_lengths)).map(_dumped),
    st.builds(lambda a, odd, b: a + odd + b, _short, st.sampled_from(list(ODD)), _short).map(
        _dumped),
    st.builds(lambda a, odd, b: a + odd + b, _short, st.sampled_from(list(ODD)), _short).map(
        _raw_utf8),
    st.sampled_from([b"7", b"null", b"[]", b"{}", b"true", b"1.5", b'"\\u0000"', b'"a\\u0000"',
                     b'"\\ud800"', b'"\\udc00x"', b'"\\ud83d\\ude00"', poison.LONG_KEY_TEXT]),
)  # fmt: skip
_json_decimals = st.one_of(
    decimal_texts.map(_dumped),
    decimal_texts.filter(lambda t: "N" not in t and "I" not in t).map(str.encode),
    st.sampled_from([b"1e400", b"-0", b"-0.0", b"0.0", b"1.0000000000000000000000000", b"1e-25",
                     b"1" * 45, b"-" + b"9" * 30, b"true", b"null", b'"abc"', b'"1_000"',
                     b'" 1.5 "', b'"\\u0661"', b"[]", poison.LONG_DECIMAL]),
)  # fmt: skip


def _iso(moment: datetime) -> bytes:
    return _dumped(moment.isoformat())


_json_times = st.one_of(
    st.builds(lambda d, z: d.replace(tzinfo=z), _naive, zones).map(_iso),
    st.builds(lambda d, z: d.replace(tzinfo=z), _naive, zones).map(_iso),
    _naive.map(_iso),
    st.sampled_from([
        b'"2024-03-01T12:00:00Z"', b'"2024-03-01t12:00:00z"', b'"2024-03-01 12:00:00Z"',
        b'"2024-03-01T12:00:00.1234567Z"', b'"2024-03-01T24:00:00Z"',
        b'"1969-12-31T23:00:00-02:00"', b'"2099-12-31T23:00:00-02:00"',
        b'"2100-01-01T00:00:00+00:01"', b'"1970-01-01T00:00:00Z"', b'"0001-01-01T00:00:00+14:00"',
        b'"9999-12-31T23:59:59-14:00"', b'"2024-03-01T12:00:00-00:00"',
        b"1709294400", b"null", poison.MICROSECONDS,
    ]),
)  # fmt: skip


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


_json_extras = st.one_of(
    extras.filter(_jsonable).map(_dumped),
    st.sampled_from([
        b'{"f":1e400}', b'{"f":1e308}', b'{"f":-0.0}', b'{"\\u0000":1}', b'{"a":"\\u0000"}',
        b'{"a":["\\u0000"]}', b'{"a":"\\ud800"}', b'{"n":18446744073709551615}',
        b'{"n":-9223372036854775809}', b'{"n":9223372036854775807}',
        b'{"n":' + poison.BIG_INT + b"}",
        b'{"deep":' + poison.DEEP_ARRAYS + b"}", poison.DEEP_OBJECTS, b"[]", b'"note"', b"7",
    ]),
)  # fmt: skip
_json_sides = st.sampled_from([b'"buy"', b'"sell"', b'"bid"', b'"ask"', b"null", b'"BUY"',
                               b'"long"', b'""', b"1", b'["buy"]'])  # fmt: skip
_json_intervals = st.one_of(
    intervals.filter(lambda i: isinstance(i, str)).map(lambda i: _dumped(str(i))),
    st.sampled_from([b"1", b"null", b"[]"]),
)
_json_counts = st.sampled_from(
    [b"0", b"412", b"-1", b"-0", b"9223372036854775807", b"9223372036854775808",
     b"18446744073709551616", b"true", b"1.0", b"1e2", b'"1"', b"null"]
)  # fmt: skip
_json_closed = st.sampled_from([b"true", b"false", b"0", b"1", b'"true"', b"null"])

TICK_JSON: dict[str, st.SearchStrategy[bytes]] = {
    "exchange": _json_texts, "symbol": _json_texts, "source": _json_texts,
    "trade_id": _json_texts, "timestamp": _json_times, "received_at": _json_times,
    "price": _json_decimals, "size": _json_decimals, "side": _json_sides, "extras": _json_extras,
}  # fmt: skip
BAR_JSON: dict[str, st.SearchStrategy[bytes]] = {
    "exchange": _json_texts, "symbol": _json_texts, "source": _json_texts,
    "interval": _json_intervals, "timestamp": _json_times, "open": _json_decimals,
    "high": _json_decimals, "low": _json_decimals, "close": _json_decimals,
    "volume": _json_decimals, "trade_count": _json_counts, "closed": _json_closed,
    "vwap": _json_decimals | st.just(b"null"),
}  # fmt: skip


def _oracle_outcome(data: bytes) -> tuple[str, object]:
    """What ``codec.decode`` said before: the oracle's decoder and the same envelope rules."""
    try:
        batch = oracle_decoder.decode(data)
    except Exception as exc:  # everything the old decode turned into a dead letter
        return "refused", str(exc)
    if batch.v != 1 or not batch.records:
        return "refused", "envelope"
    return type(batch).__name__.removeprefix("Oracle"), [_fields(r) for r in batch.records]


def _new_outcome(data: bytes) -> tuple[str, object]:
    try:
        batch = decode(data)
    except DecodeError as exc:
        return "refused", exc.reason
    return type(batch).__name__, [_fields(r) for r in batch.records]


def _named_field(message: str) -> str | None:
    found = re.match(r"(\w+): ", message) or re.search(r"\$\.records\[\d+\]\.(\w+)", message)
    return found[1] if found else None


def _assert_decoded_as_before(data: bytes, mutated: list[str] | None = None) -> None:
    """Same outcome; a refusal names the oracle's field when one field was mutated, else one
    of the mutated fields (or the end of a bar's range that another one broke)."""
    new, old = _new_outcome(data), _oracle_outcome(data)
    assert new[0] == old[0], (new, old)
    if new[0] != "refused":
        assert new[1] == old[1]
        return
    field = _named_field(str(old[1]))
    if field is None:
        return
    if mutated is None or len(mutated) == 1:
        assert f"{field}: " in str(new[1]), (new, old)
    else:
        named = _named_field(str(new[1]).removeprefix("invalid record: "))
        assert named in {*mutated, "high", "open", "close", "vwap"}, (new, old)


_DECIMAL_FIELDS = frozenset(("price", "size", "open", "high", "low", "close", "volume", "vwap"))


@st.composite
def _respelled(draw: st.DrawFn, text: str) -> bytes:
    """The valid decimal ``text`` spelt otherwise: more zeros, an exponent, a sign, scaled; as
    a JSON string or number."""
    value = Decimal(text)
    how = draw(st.sampled_from(["zeros", "exponent", "negative", "scaled"]))
    if how == "zeros":
        spelt = text + ("" if "." in text else ".") + "0" * draw(st.integers(0, 30))
    elif how == "exponent":
        spelt = f"{value:E}"
    elif how == "negative":
        spelt = "-" + text
    else:
        spelt = str(value.scaleb(draw(st.integers(-35, 35))))
    return _dumped(spelt) if draw(st.booleans()) else spelt.encode()


@st.composite
def _mutated_batch(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A batch of one to three records, one of them with one or two fields replaced by raw JSON
    (the others valid, so that a refusal is about the mutated record)."""
    is_tick = draw(st.booleans())
    if is_tick:
        records = [sample_tick(trade_id=str(i)) for i in range(draw(st.integers(1, 3)))]
        document = json.loads(encode_ticks(records))
        values = TICK_JSON
    else:
        records_b = [
            sample_bar(symbol=f"S{i}", vwap=Decimal("61221.5"))
            for i in range(draw(st.integers(1, 3)))
        ]
        document = json.loads(encode_bars(records_b))
        values = BAR_JSON
    index = draw(st.integers(0, len(document["records"]) - 1))
    names = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2, unique=True))
    record = document["records"][index]
    fragments = {
        name: draw(
            values[name] | _respelled(str(record[name]))
            if name in _DECIMAL_FIELDS
            else values[name]
        )
        for name in names
    }
    holes = {name: f"\x00hole{n}\x00" for n, name in enumerate(names)}
    record.update(holes)
    data = json.dumps(document, separators=(",", ":")).encode()
    for name, hole in holes.items():
        data = data.replace(json.dumps(hole).encode(), fragments[name], 1)
    return data, names


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_batch())
def test_decoded_json_is_accepted_or_refused_exactly_as_before(
    mutated: tuple[bytes, list[str]],
) -> None:
    _assert_decoded_as_before(*mutated)


_TICKS = json.loads(encode_ticks([sample_tick(), sample_tick(trade_id="2", side=None)]))
_BARS = json.loads(encode_bars([sample_bar()]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poison.poisoned_json(_TICKS) | poison.poisoned_json(_BARS))
def test_poisoned_json_is_accepted_or_refused_exactly_as_before(data: bytes) -> None:
    _assert_decoded_as_before(data)


@pytest.mark.parametrize(
    "data",
    [
        # a NUL escape anywhere sends the whole message through every check
        encode_ticks([sample_tick()]).replace(b'"sell"', b'"sell","note":"\\u0000"'),
        encode_ticks([sample_tick(extras={"n": "x"})]).replace(b'"x"', b'"\\u0000"'),
        encode_ticks([sample_tick()]).replace(b'"BTCUSDT"', b'"BTC\\u0000"'),
        encode_ticks([sample_tick()]).replace(b'"BTCUSDT"', b'"\\u3000"'),
        encode_bars([sample_bar()]).replace(b'"BTCUSDT"', b'"\\\\u0000"'),
        encode_bars([sample_bar()]).replace(b'"1m"', b'"\\u0000"'),
        encode_ticks([sample_tick()]).replace(b"+00:00", b"+01:00").replace(b"Z", b"+01:00"),
    ],
)
def test_the_edges_of_the_decode_path_are_decoded_as_before(data: bytes) -> None:
    _assert_decoded_as_before(data)


def test_the_records_cannot_be_subclassed_to_loosen_the_decoders_constraints() -> None:
    with pytest.raises(TypeError, match="cannot be subclassed"):
        type("Loose", (Tick,), {"__annotations__": {"symbol": "str"}})
    with pytest.raises(TypeError, match="cannot be subclassed"):
        type("Loose", (Bar,), {})


@pytest.mark.parametrize(
    "build",
    [
        lambda fields: msgspec.json.decode(json.dumps(fields), type=Tick),
        lambda fields: msgspec.convert(fields, Tick),
        lambda fields: msgspec.json.Decoder(list[Tick]).decode(json.dumps([fields]))[0],
    ],
)
def test_records_decoded_or_converted_elsewhere_get_every_check(build: Any) -> None:
    # Only RecordDecoder's own frame skips what its constraints checked; the NUL check is not
    # one of them, so a NUL in a message read by any other decoder must still be refused.
    fields = json.loads(encode_ticks([sample_tick()]))["records"][0]
    assert build(fields) == sample_tick()
    with pytest.raises(msgspec.ValidationError, match="symbol: must not contain NUL"):
        build({**fields, "symbol": "BTC\x00"})
    with pytest.raises(msgspec.ValidationError, match="symbol: must be a non-empty string"):
        build({**fields, "symbol": " "})
