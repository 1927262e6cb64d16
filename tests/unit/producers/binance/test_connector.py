"""binance-connector is deprecated upstream: one module imports it, so that one module changes
when Binance's modular SDK replaces it."""

from __future__ import annotations

import ast
from pathlib import Path

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
