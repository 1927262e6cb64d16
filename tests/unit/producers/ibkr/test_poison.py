"""Structure-aware mutations of the recorded TWS messages (sandbox/fixtures/ibkr) through the
normaliser: the only outcomes are records or an ``InvalidRecord`` naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Final

from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async.decoder import Decoder

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Tick
from producers.ibkr.normalise import (
    TickIds,
    check_history_layout,
    historical_bar,
    realtime_bar,
    tick_by_tick,
)
from sandbox import FIXTURES as RECORDINGS

FIXTURES: Final = RECORDINGS / "ibkr"
RECEIVED = datetime(2024, 3, 1, 15, 0, 7, tzinfo=UTC)
T0 = 1_709_305_200
_RECORDED = json.loads((FIXTURES / "trades.json").read_text())


def _trades() -> list[list[str]]:
    """The recorded trades as the tick-by-tick (99) fields TWS sends, AllLast."""
    return [["99", "7", "2", str(T0 + row["offset_s"]), row["price"], row["size"],
             str(row["mask"]), row["venue"], row["conditions"]]
            for symbol, rows in _RECORDED.items() if not symbol.startswith("_")
            for row in rows]  # fmt: skip


QUOTE = ["99", "7", "3", str(T0), "189.51", "189.53", "300", "200", "0"]
BAR = ["50", "3", "9", str(T0), "189.5", "189.61", "189.42", "189.6", "1200", "189.55", "17"]
MESSAGES = [*_trades(), QUOTE, BAR]

_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "-", "-1", "0", "1e999", "-1e999", "NaN", "sNaN", "Infinity", "1_000",
                     " 12 ", "\u0663", "\u00b2", "\uff11\uff12", "\x00", "\ud800", "0x10", "1.5",
                     "1709305205000", "4102444800", "-9223372036854775809", "18446744073709551616",
                     "9" * 5_000, "1" + "0" * 40, "0." + "0" * 40 + "1", "x" * 5_000]),
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)  # fmt: skip


def outcome(build: Callable[[], list[Any]]) -> list[Any] | InvalidRecord:
    try:
        return build()
    except InvalidRecord as exc:
        return exc


def _normalise(fields: list[str]) -> list[Tick | Bar] | InvalidRecord:
    if fields[:1] == ["50"]:
        return outcome(lambda: [realtime_bar(fields, "AAPL")])
    return outcome(lambda: list(tick_by_tick(fields, "AAPL", RECEIVED, TickIds())))


def test_the_recorded_messages_are_valid() -> None:
    results = [_normalise(fields) for fields in MESSAGES]
    assert all(isinstance(result, list) and result for result in results)


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_mutated_tws_messages_give_records_or_an_invalid_record(data: st.DataObject) -> None:
    fields = list(data.draw(st.sampled_from(MESSAGES)))
    for index in data.draw(st.lists(st.integers(1, len(fields) - 1), max_size=4, unique=True)):
        fields[index] = data.draw(_TEXT)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(1, len(fields) + 2))
        fields = [*fields, data.draw(_TEXT), data.draw(_TEXT)][:cut]
    result = _normalise(fields)
    assert isinstance(result, list | InvalidRecord)
    if isinstance(result, InvalidRecord):
        assert result.field


_NUMBER = st.one_of(
    st.floats(),
    st.integers(),
    st.sampled_from([-1, -1.0, 0.0, 1e308, 2**63, 2**64, 10**400]),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_NUMBER, min_size=5, max_size=7),
       st.sampled_from([datetime(2024, 3, 1, 15, tzinfo=UTC), date(2024, 3, 1)]))  # fmt: skip
def test_historical_values_give_a_bar_or_an_invalid_record(
    values: list[Any], when: datetime | date
) -> None:
    result = outcome(lambda: [historical_bar(when, values, "AAPL", "1m", closed=True)])
    assert isinstance(result, list | InvalidRecord)


class _Collected:
    """The wrapper side of ib_async's decoder: what it read from a 17 frame."""

    def __init__(self) -> None:
        self.bars: list[Any] = []
        self.ended = False

    def historicalData(self, req_id: int, bar: Any) -> None:  # noqa: N802 - ib_async's name
        self.bars.append(bar)

    def historicalDataEnd(self, req_id: int, start: str, end: str) -> None:  # noqa: N802
        self.ended = True


# A 17 frame as TWS 176 sends it (IB's decoder, processHistoricalDataMsg, below
# MIN_SERVER_VER_HISTORICAL_DATA_END): reqId, startDate, endDate, itemCount, then date, open,
# high, low, close, volume, wap, barCount per bar.
HISTORY = ["17", "4", "20240301 15:00:00", "20240301 15:02:00", "2",
           str(T0), "189.5", "189.61", "189.42", "189.6", "1200", "189.55", "17",
           str(T0 + 60), "189.6", "189.7", "189.5", "189.66", "900", "189.6", "12"]  # fmt: skip


def test_the_history_frame_is_valid_and_read_whole_by_ib_async() -> None:
    check_history_layout(HISTORY, 176)
    collected = _Collected()
    Decoder(collected, 176).historicalData(HISTORY)  # type: ignore[arg-type,no-untyped-call]
    assert (len(collected.bars), collected.ended) == (2, True)


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_mutated_history_frames_pass_whole_to_ib_async_or_are_refused(
    data: st.DataObject,
) -> None:
    fields = list(HISTORY)
    for index in data.draw(st.lists(st.integers(1, len(fields) - 1), max_size=4, unique=True)):
        fields[index] = data.draw(_TEXT)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(1, len(fields) + 9))
        fields = [*fields, *(data.draw(_TEXT) for _ in range(9))][:cut]

    def checked() -> list[Any]:
        check_history_layout(fields, 176)
        return []

    refused = outcome(checked)
    if isinstance(refused, InvalidRecord):
        assert refused.field
        return
    # What the check passes, ib_async reads without an error, every bar the frame announces.
    collected = _Collected()
    Decoder(collected, 176).historicalData(fields)  # type: ignore[arg-type,no-untyped-call]
    assert (len(collected.bars), collected.ended) == (int(fields[4]), True)
