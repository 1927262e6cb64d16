"""Which paths of an alert body become which field of the tick: the documented mapping.

TradingView users write their own JSON around TradingView's placeholders, so one alert names
the price ``price``, another ``close``, a third nests it as ``bar.close``. Each record field has
an ordered list of paths; the first present in the body wins. A path ``a.b`` is looked up as
nested objects (``{"a": {"b": …}}``) and, failing that, as a top-level key ``"a.b"`` (some
templates write the placeholder's name as the key). ``MDP_WEBHOOK_FIELDS`` replaces the list of
the fields it names: ``price=bar.close|close,symbol=ticker``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from marketdata.errors import ConfigError

FIELDS: Final = ("symbol", "exchange", "price", "size", "side", "time", "trade_id")
# fmt: off
DEFAULT_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "symbol": ("ticker", "symbol", "tickerid"),
    "exchange": ("exchange",),
    # An order fill's own price comes before the bar's close it happened in.
    "price": ("price", "strategy.order.price", "strategy.order_price", "order_price", "close",
              "bar.close"),
    # An order's contracts are the size of that trade; a bar's volume is not.
    "size": ("size", "qty", "quantity", "contracts", "amount", "strategy.order.contracts",
             "strategy.order_contracts", "order_contracts", "volume", "bar.volume"),
    "side": ("side", "action", "strategy.order.action", "strategy.order_action", "order_action"),
    # What the user named `time` first; the alert's own time ({{timenow}}) only failing all else.
    "time": ("time", "timestamp", "bar.time", "timenow"),
    "trade_id": ("id", "trade_id"),
}
# fmt: on
VARIABLE: Final = "MDP_WEBHOOK_FIELDS"
_SEGMENT: Final = re.compile(r"[^.,=|\s]{1,64}")
_MAX_PATH_SEGMENTS: Final = 8


@dataclass(frozen=True, slots=True)
class FieldMap:
    """The paths of each record field, and the exchange of alerts that name none."""

    paths: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PATHS))
    default_exchange: str = "TRADINGVIEW"

    @classmethod
    def from_setting(cls, spec: str | None, default_exchange: str = "TRADINGVIEW") -> FieldMap:
        return cls(parse_fields(spec), default_exchange.strip().upper())


def parse_fields(spec: str | None) -> dict[str, tuple[str, ...]]:
    """``field=path|path,field=path`` over the defaults; ConfigError naming the variable."""
    paths = dict(DEFAULT_PATHS)
    if spec is None or not spec.strip():
        return paths
    seen: set[str] = set()
    for entry in (e.strip() for e in spec.split(",")):
        name, sep, alternatives = entry.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"{VARIABLE}: {entry!r} is not field=path (e.g. price=bar.close)")
        if name not in FIELDS:
            raise ConfigError(f"{VARIABLE}: unknown field {name!r}, one of {', '.join(FIELDS)}")
        if name in seen:
            raise ConfigError(f"{VARIABLE}: {name} given twice; list paths as a|b")
        seen.add(name)
        chosen = tuple(p.strip() for p in alternatives.split("|"))
        for path in chosen:
            segments = path.split(".")
            if len(segments) > _MAX_PATH_SEGMENTS or not all(
                _SEGMENT.fullmatch(s) for s in segments
            ):
                raise ConfigError(f"{VARIABLE}: {name}: bad path {path!r} (keys joined by '.')")
        paths[name] = chosen
    return paths


_MISSING: Final = object()


def lookup(alert: dict[str, Any], path: str) -> object:
    """The value at ``path``, nested first, then as a literal key; ``_MISSING`` when absent."""
    node: object = alert
    for segment in path.split("."):
        if not isinstance(node, dict) or segment not in node:
            node = _MISSING
            break
        node = node[segment]
    if node is _MISSING and "." in path:
        node = alert.get(path, _MISSING)
    return node


def is_missing(value: object) -> bool:
    return value is _MISSING


def without(alert: dict[str, Any], used: list[str]) -> dict[str, Any]:
    """The alert less the paths that became record fields (copies, never the alert's own dicts);
    objects left empty go too. Each path is removed where :func:`lookup` found it."""
    result = dict(alert)
    for path in used:
        segments = path.split(".")
        parents = [result]
        for segment in segments[:-1]:
            child = parents[-1].get(segment)
            if not isinstance(child, dict):
                break
            copy = dict(child)
            parents[-1][segment] = copy
            parents.append(copy)
        else:
            if segments[-1] in parents[-1]:
                del parents[-1][segments[-1]]
                for depth in range(len(parents) - 1, 0, -1):
                    if parents[depth]:
                        break
                    del parents[depth - 1][segments[depth - 1]]
                continue
        result.pop(path, None)
    return result
