"""The poison corpus: structure-aware mutations of real-shaped JSON payloads.

A mutation keeps the document's shape and replaces one value (or one key) at a path it picks with
something a venue, a client or an attacker could send instead: another JSON type, a number or a
string far too long, nesting far too deep, a time in another unit, text PostgreSQL cannot hold.
Nesting deeper than Python's recursion limit cannot be built as Python objects and serialised, so
values are spliced into the serialised document as raw JSON fragments.

Boundaries are driven with these by hypothesis (``poisoned_json``) and by the named ``CASES``
that reproduce the inputs of issue #14 one by one.
"""

from __future__ import annotations

import json
from typing import Any, Final

from hypothesis import strategies as st

_HOLE: Final = "\x00hole\x00"
_HOLE_JSON: Final = json.dumps(_HOLE).encode()


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"0" + b"}" * depth


# Raw JSON fragments, each one value; the named ones are the issue's own inputs.
LONG_DECIMAL: Final = b'"1.' + b"7" * 20_000 + b'"'
LONG_KEY_TEXT: Final = b'"' + b"K" * 2_800 + b'"'
DEEP_ARRAYS: Final = nested(5_000)
DEEP_OBJECTS: Final = nested_objects(10_000)
BIG_INT: Final = b"1" + b"0" * 5_000
MICROSECONDS: Final = b"1735689600123456"

_fragments: Final = st.sampled_from(
    [
        LONG_DECIMAL, LONG_KEY_TEXT, DEEP_ARRAYS, DEEP_OBJECTS, BIG_INT, MICROSECONDS,
        nested(3_000), b"-1", b"0", b"1e400", b"-1e400", b"1e15", b"1.5", b"true", b"null",
        b"[]", b"{}", b'""', b'" "', b'"NaN"', b'"Infinity"', b'"-0"', b'"\\u0000"', b'"\\ud800"',
        b'"2024-03-01T12:00:00"', b'"0001-01-01T00:00:00+14:00"', b'"9999-12-31T23:59:59Z"',
        b"1709294400", b"1709294400000", b"1709294400000000", b"1709294400000000000",
        b"18446744073709551616", b'"' + b"x" * 100_000 + b'"', b'{"nested":{"deeper":[1,2]}}',
    ]
)  # fmt: skip
_plain: Final = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
).map(lambda value: json.dumps(value).encode())
fragments: Final = _fragments | _plain


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: _replaced(document.get(head), rest, value)}
    return [_replaced(v, rest, value) if i == head else v for i, v in enumerate(document)]


def _removed(document: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        if isinstance(document, dict):
            return {k: _removed(v, rest) if k == head else v for k, v in document.items()}
        return [_removed(v, rest) if i == head else v for i, v in enumerate(document)]
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k != head}
    return [v for i, v in enumerate(document) if i != head]


def splice(document: Any, path: tuple[Any, ...], fragment: bytes) -> bytes:
    """``document`` serialised compactly, with the value at ``path`` replaced by ``fragment``."""
    text = json.dumps(_replaced(document, path, _HOLE), separators=(",", ":")).encode()
    return text.replace(_HOLE_JSON, fragment, 1)


@st.composite
def poisoned_json(draw: st.DrawFn, document: Any) -> bytes:
    """One structure-aware mutation of ``document``: a value replaced, a key removed or added,
    the document truncated or wrapped."""
    paths = _paths(document)
    how = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add", "cut", "wrap"]))
    if how == "remove" and len(paths) > 1:
        path = draw(st.sampled_from(paths[1:]))
        return json.dumps(_removed(document, path), separators=(",", ":")).encode()
    if how == "add":
        objects = [p for p in paths if isinstance(_at(document, p), dict)]
        if objects:
            path = draw(st.sampled_from(objects))
            key = draw(st.sampled_from(["extra", "", "\\u0000", "k" * 300]))
            return splice(document, (*path, key), draw(fragments))
    whole = json.dumps(document, separators=(",", ":")).encode()
    if how == "cut":
        return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]
    if how == "wrap":
        return b"[" + whole + b"]"
    return splice(document, draw(st.sampled_from(paths)), draw(fragments))


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document
