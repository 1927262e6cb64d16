"""binance-connector is deprecated upstream: one module imports it, so that one module changes
when Binance's modular SDK replaces it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from marketdata.settings import Settings
from producers.binance.connector import asked_time_unit, rest_client

ROOT = Path(__file__).resolve().parents[4]


def _imports_binance(path: Path) -> bool:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return any(name == "binance" or name.startswith("binance.") for name in names)


def test_only_the_connector_module_imports_binance_connector() -> None:
    sources = [p for folder in ("producers", "mdp", "marketdata", "sandbox", "bench")
               for p in (ROOT / folder).rglob("*.py")]  # fmt: skip
    importing = sorted(str(p.relative_to(ROOT)) for p in sources if _imports_binance(p))
    assert importing == ["producers/binance/connector.py"]


@pytest.mark.parametrize(
    ("unit", "header"), [("microsecond", "MICROSECOND"), ("millisecond", None)]
)
def test_rest_clients_ask_for_binance_time_unit(unit: str, header: str | None) -> None:
    settings = Settings.from_env({"BINANCE_TIME_UNIT": unit})
    assert asked_time_unit(settings) == header
    client = rest_client(settings)
    assert client.session.headers.get("X-MBX-TIME-UNIT") == header
    # An explicit unit wins over the setting (a test, or a caller that must match a stream).
    assert rest_client(settings, time_unit="MILLISECOND").session.headers.get(
        "X-MBX-TIME-UNIT") is None  # fmt: skip
    assert rest_client(settings, time_unit="MICROSECOND").session.headers[
        "X-MBX-TIME-UNIT"] == "MICROSECOND"  # fmt: skip


def test_microseconds_are_the_default() -> None:
    # Dumps carry µs since 2025: live and REST copies of a trade dedupe with them only in µs.
    assert asked_time_unit(Settings.from_env({})) == "MICROSECOND"
