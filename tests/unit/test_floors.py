"""The floors hold: the kernel imports no role and no application module, a role imports only the
kernel, and nothing outside the tests imports them. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "marketdata"
ROLES = ("producers", "processors", "sinks", "webhook")
APPLICATION = "mdp"


def _imports(package: str) -> dict[str, set[str]]:
    """Every top-level package each module of ``package`` imports, by module path."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def _offending(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    return {module: names & forbidden for module, names in _imports(package).items()
            if names & forbidden}  # fmt: skip


def test_the_kernel_imports_no_role_and_no_application_module() -> None:
    assert _offending(KERNEL, {*ROLES, APPLICATION, "tests", "bench"}) == {}


@pytest.mark.parametrize("role", ROLES)
def test_a_role_imports_only_the_kernel(role: str) -> None:
    others = {*ROLES, APPLICATION, "tests", "bench"} - {role}
    assert _offending(role, others) == {}


@pytest.mark.parametrize("package", [KERNEL, *ROLES, APPLICATION, "migrations"])
def test_nothing_outside_the_tests_imports_them(package: str) -> None:
    assert _offending(package, {"tests"}) == {}


def test_the_walk_sees_imports_inside_functions() -> None:
    # The application imports the roles inside its commands: a walk that missed those would
    # pass the kernel's test for the wrong reason.
    assert {"producers", "processors", "sinks", "webhook"} <= set().union(
        *_imports(APPLICATION).values()
    )
