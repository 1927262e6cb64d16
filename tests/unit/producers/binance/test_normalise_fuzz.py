"""Every normaliser is total: any single-field mutation of a recorded Binance payload gives
records or InvalidRecord, never another exception (the issue counted 35 of 585 that crashed)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.producers.binance.mutations import (
    NORMALISERS,
    REPLACEMENTS,
    deep,
    mutations,
    outcome,
    paths,
    removed,
    replaced,
)


def test_every_single_field_mutation_gives_records_or_invalid_record() -> None:
    crashes: list[str] = []
    outcomes: dict[str, int] = {}
    for name, description, payload in mutations():
        try:
            result = outcome(name, payload)
        except Exception as exc:  # any other exception is the failure reported
            crashes.append(f"{name}: {description}: {type(exc).__name__}: {exc!s:.120}")
        else:
            outcomes[result] = outcomes.get(result, 0) + 1
    total = len(crashes) + sum(outcomes.values())
    assert total > 800  # every field of the seven payloads, with every kind of value
    assert crashes == [], f"{len(crashes)} of {total} mutations crashed:\n" + "\n".join(crashes)
    # Most mutations break the record; some (an extra key, a bigger size) leave a valid one.
    assert outcomes["invalid"] > outcomes["records"] > 0


# JSON-shaped values, plus what a decoder of another language or a careless venue could put.
_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
    | st.sampled_from(["NaN", "1e999999", "-0", "0x10", " 1 ", "1_000", "١٢٣"])
    | st.integers(min_value=10**11, max_value=10**20)
)  # fmt: skip
_nested = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_values = (
    _nested | st.sampled_from(list(REPLACEMENTS.values())) | st.builds(deep, st.integers(1, 3000))
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(NORMALISERS)))
    payload = NORMALISERS[name][0]
    path = draw(st.sampled_from(list(paths(payload))))
    action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if action == "remove":
        return name, removed(payload, path)
    if action == "add" and isinstance(payload, dict):
        return name, {**payload, draw(st.text(max_size=3)): draw(_values)}
    return name, replaced(payload, path, draw(_values))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzzed_payloads_give_records_or_invalid_record(case: tuple[str, Any]) -> None:
    name, payload = case
    assert outcome(name, payload) in {"records", "none", "invalid"}
