"""The floors hold: the kernel imports no role and no application module, a role imports only the
kernel, and nothing outside the tests imports them. Imports inside functions count too.

The sandbox venues are a role too, with one documented exception (see ``sandbox/__init__.py``):
the DTC venue speaks through the DTC client's own message table and framing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "marketdata"
ROLES = ("producers", "processors", "sinks", "webhook", "sandbox")
# module -> the modules of other roles it may import, and no others
EXCEPTIONS = {"sandbox/dtc.py": {"producers.dtc.messages", "producers.dtc.codec"}}
APPLICATION = "mdp"


def _modules(package: str) -> dict[str, set[str]]:
    """Every module each module of ``package`` imports (dotted, as written), by module path."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def _imports(package: str) -> dict[str, set[str]]:
    """Every top-level package each module of ``package`` imports, by module path."""
    return {module: {name.split(".")[0] for name in names}
            for module, names in _modules(package).items()}  # fmt: skip


def _offending(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    found = {module: {name for name in names - EXCEPTIONS.get(module, set())
                      if name.split(".")[0] in forbidden}
             for module, names in _modules(package).items()}  # fmt: skip
    return {module: names for module, names in found.items() if names}


def test_the_kernel_imports_no_role_and_no_application_module() -> None:
    assert _offending(KERNEL, {*ROLES, APPLICATION, "tests", "bench"}) == {}


@pytest.mark.parametrize("role", ROLES)
def test_a_role_imports_only_the_kernel(role: str) -> None:
    others = {*ROLES, APPLICATION, "tests", "bench"} - {role}
    assert _offending(role, others) == {}


@pytest.mark.parametrize("package", [KERNEL, *ROLES, APPLICATION, "migrations", "bench"])
def test_nothing_outside_the_tests_imports_them(package: str) -> None:
    assert _offending(package, {"tests"}) == {}


def test_the_walk_sees_imports_inside_functions() -> None:
    # The application imports the roles inside its commands: a walk that missed those would
    # pass the kernel's test for the wrong reason.
    assert {"producers", "processors", "sinks", "webhook"} <= set().union(
        *_imports(APPLICATION).values()
    )


def test_the_sandbox_borrows_only_the_dtc_message_table_and_framing() -> None:
    # The one exception is real (an unused allowance would hide a later, wider one) and exact.
    borrowed = {module: {name for name in names if name.split(".")[0] in set(ROLES) - {"sandbox"}}
                for module, names in _modules("sandbox").items()}  # fmt: skip
    assert {module: names for module, names in borrowed.items() if names} == EXCEPTIONS
