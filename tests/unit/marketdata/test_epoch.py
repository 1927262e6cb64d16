from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.epoch import Unit, epoch_datetime, epoch_unit
from marketdata.errors import InvalidRecord

# 2025-01-01T00:00:00.123456Z, as Binance's dumps wrote it before and after they switched to µs.
MOMENT = datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1_735_689_600, "s", MOMENT.replace(microsecond=0)),
        (1_735_689_600_123, "ms", MOMENT.replace(microsecond=123000)),
        (1_735_689_600_123_456, "us", MOMENT),
        (1_735_689_600_123_456_789, "ns", MOMENT),
        (1_735_689_600.123456, "s", MOMENT),
        ("1735689600123456", "us", MOMENT),
        (Decimal("1735689600.123456"), "s", MOMENT),
        (0, "s", datetime(1970, 1, 1, tzinfo=UTC)),
        (99_999_999_999, "s", None),  # seconds past 2100: out of range, not milliseconds
    ],
)
def test_the_magnitude_decides_the_unit(
    value: object, unit: str, expected: datetime | None
) -> None:
    number = Decimal(str(value))
    assert epoch_unit(int(number) if number == number.to_integral_value() else number) == unit
    if expected is None:
        with pytest.raises(InvalidRecord, match="outside"):
            epoch_datetime(value)
    else:
        assert epoch_datetime(value) == expected


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns", None])
@pytest.mark.parametrize("value", [1.7e308, -1.7e308, 10**30, Decimal("1e30"), "1e30"])
def test_huge_numbers_are_out_of_range_in_every_unit(value: object, unit: Unit | None) -> None:
    with pytest.raises(InvalidRecord, match="out of range"):
        epoch_datetime(value, "time", unit)


def test_an_explicit_unit_overrides_the_rule() -> None:
    assert epoch_datetime(86_400_000, unit="ms") == datetime(1970, 1, 2, tzinfo=UTC)
    assert epoch_datetime(86_400_000) == datetime(1972, 9, 27, tzinfo=UTC)  # seconds by the rule
    with pytest.raises(InvalidRecord, match="outside"):
        epoch_datetime(1_735_689_600_123, unit="s")


@pytest.mark.parametrize(
    "value",
    [
        -1, 10**20, 10**4000, 1e15 * 1e10, float("nan"), float("inf"), "", "soon", "1" * 41,
        True, None, [1_735_689_600], {"t": 1}, Decimal("NaN"), Decimal("1e999999"), 4_102_444_800,
    ],
)  # fmt: skip
def test_what_is_no_time_is_an_invalid_record_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRecord) as caught:
        epoch_datetime(value, "time")
    assert caught.value.field == "time"


@given(
    st.integers()
    | st.floats()
    | st.decimals()
    | st.text(max_size=60)
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=2)
)
def test_epoch_datetime_is_total(value: object) -> None:
    outcome: datetime | str
    try:
        outcome = epoch_datetime(value)
    except InvalidRecord as exc:
        outcome = exc.field
    assert outcome == "timestamp" or (
        isinstance(outcome, datetime)
        and datetime(1970, 1, 1, tzinfo=UTC) <= outcome < datetime(2100, 1, 1, tzinfo=UTC)
    )


@given(st.datetimes(min_value=datetime(1973, 3, 4), max_value=datetime(2099, 12, 31)))
def test_every_unit_round_trips_from_1973_to_2100(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert epoch_datetime(micros) == moment
    assert epoch_datetime(micros * 1000) == moment
    assert epoch_datetime(micros // 1000) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
    assert epoch_datetime(micros // 1_000_000) == moment.replace(microsecond=0)
