"""The rollup list of ``MDP_ROLLUP_INTERVALS`` (``5m,15m,1h,1d``), without the database: the
settings check it at load, so a bad list fails every command once, at start, instead of the
rollup role at its first round (marketdata/rollups.py makes and keeps the rollups)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from marketdata.errors import ConfigError

SOURCE: Final = "market_data_ohlcv"
LOOKBACK: Final = timedelta(days=3)
_UNITS: Final = {"m": 60, "h": 3600, "d": 86_400}
_SPEC = re.compile(r"([1-9][0-9]{0,5})([mhd])")


@dataclass(frozen=True, slots=True)
class Rollup:
    name: str
    width: timedelta

    @property
    def table(self) -> str:
        return f"{SOURCE}_{self.name}"

    @property
    def lookback(self) -> timedelta:
        return max(LOOKBACK, 3 * self.width)

    @property
    def schedule(self) -> timedelta:
        return min(self.width, timedelta(hours=1))


ALLOWED: Final = (
    "a comma-separated list of N followed by m, h or d (N from 1 to 999999), each longer than the"
    " 1m bars rolled up, e.g. 5m,15m,1h,1d"
)


def parse(spec: str) -> tuple[Rollup, ...]:
    """The rollups ``5m,15m,1h,1d`` names, shortest first, each width once (the first name given
    for it); ValueError saying what is wrong and what is allowed."""
    found: dict[timedelta, Rollup] = {}
    for part in (p.strip() for p in spec.split(",")):
        match = _SPEC.fullmatch(part)
        if not match:
            raise ValueError(f"{part!r} is not N followed by m, h or d; allowed: {ALLOWED}")
        width = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        if width <= timedelta(minutes=1):
            raise ValueError(f"{part!r} is not longer than the 1m bars; allowed: {ALLOWED}")
        found.setdefault(width, Rollup(part, width))
    return tuple(found[width] for width in sorted(found))


def rollups(spec: str) -> tuple[Rollup, ...]:
    """:func:`parse`, failing with a ConfigError naming the variable (the settings check it at
    load, so that every command fails at start rather than a role at its first round)."""
    try:
        return parse(spec)
    except ValueError as exc:
        raise ConfigError(f"MDP_ROLLUP_INTERVALS: {exc}") from None
