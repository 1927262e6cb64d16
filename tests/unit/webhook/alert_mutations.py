"""Structure-aware mutations of real-shaped TradingView alerts (tests/fixtures/tradingview).

A body is drawn from a fixture alert, then 0-3 of its fields are replaced, removed or added with
poison values (deep nesting, digits storage cannot hold, epoch numbers of every unit and none,
text too long for a key column, wrong JSON types), and sometimes its bytes are cut or damaged.
The passphrase, when given, is put in the alert, and sometimes mutated too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from hypothesis import strategies as st

FIXTURES: Final = Path(__file__).resolve().parents[2] / "fixtures" / "tradingview" / "alerts.json"
ALERTS: Final[list[dict[str, Any]]] = [
    item["alert"] for item in json.loads(FIXTURES.read_text())["alerts"]
]
FIELDS: Final = ("ticker", "exchange", "price", "volume", "time", "side", "id", "passphrase")


class Raw(bytes):
    """JSON text put into a body as is (json.dumps cannot write 5,000 levels of nesting)."""


def _nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw(b"[" * depth + b"1" + b"]" * depth)
    return Raw(b'{"a":' * depth + b"1" + b"}" * depth)


_TEXTS: Final = (
    "NaN", "sNaN", "-Infinity", "1e400", "-1", "0x10", "1_000", " 42 ", "", " ", "\x00",
    "1E+29", "1e30", "0.000000000000000000000000001", "buy", "sell", "long", "BUY",
    "2024-03-01T12:00:00", "2024-03-01", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00", "2100-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
    "2024-02-30T12:00:00Z", "1709294400", "1709294400000", "1e15", "-5", "\U0001f600",
)  # fmt: skip
_NUMBERS: Final = (
    0, -1, 10**15, 1e15, 1e20, 1709294400, 1709294400.5, 1709294400000, 1709294400000000,
    1709294400000000000, 2**63 - 1, -(2**63), 2**64 - 1, 1e308, 5e-324,
)  # fmt: skip
poison: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.integers(30, 20_000).map(lambda n: "7" * n),
    st.integers(30, 20_000).map(lambda n: "1." + "3" * n),  # the 20,000-digit price
    st.integers(129, 5_000).map(lambda n: "T" * n),  # over a key column's length
    st.sampled_from(_TEXTS),
    st.sampled_from(_NUMBERS),
    st.lists(st.integers() | st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers() | st.none(), max_size=3),
    st.builds(_nested, st.integers(1, 5_000), st.sampled_from(["list", "object"])),
)


def serialise(document: dict[str, Any]) -> bytes:
    raws: list[Raw] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value)
            return f"\x00raw{len(raws) - 1}\x00"
        return value

    text = json.dumps({key: mark(value) for key, value in document.items()}).encode()
    for number, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{number}\\u0000"'.encode(), raw)
    return text


@st.composite
def alert_bodies(draw: st.DrawFn, passphrase: str | None = None) -> bytes:
    document = dict(draw(st.sampled_from(ALERTS)))
    if passphrase is not None:
        document["passphrase"] = passphrase
    for _ in range(draw(st.integers(0, 3))):
        field = draw(
            st.sampled_from(FIELDS) | st.sampled_from(sorted(document)) | st.text(max_size=8)
        )
        action = draw(st.sampled_from(["replace", "replace", "remove", "rename"]))
        if action == "remove":
            document.pop(field, None)
        elif action == "rename" and field in document:
            document[draw(st.sampled_from([field.upper(), field + " ", ""]))] = document.pop(field)
        else:
            document[field] = draw(poison)
    body = serialise(document)
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "byte", "duplicate"]))
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif damage == "byte":
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    elif damage == "duplicate":  # the same key twice: JSON parsers keep the last
        body = body[:-1] + b', "price": ' + serialise({"p": draw(poison)})[6:-1] + b"}"
    return body
