"""The sandbox venues are shipped: their modules and the recordings they replay are part of the
distribution, found beside the modules (not in a source checkout), so `mdp run` in sandbox mode
works from an installed wheel and from the Docker image."""

from __future__ import annotations

import fnmatch
import importlib.util
import tomllib
from pathlib import Path

import pytest

import sandbox
from marketdata.settings import Settings
from mdp.pipeline import ROLES, plan
from sandbox import dtc, tws

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RECORDINGS = sorted(
    path.relative_to(ROOT / "sandbox").as_posix()
    for path in (ROOT / "sandbox" / "fixtures").rglob("*")
    if path.is_file()
)


def test_the_recordings_are_read_from_beside_the_modules() -> None:
    assert Path(sandbox.__file__).resolve().parent / "fixtures" == sandbox.FIXTURES
    assert dtc.FIXTURES.parent == tws.FIXTURES.parent == sandbox.FIXTURES
    assert tws.instruments()  # the recorded contracts load through the package's own path


def test_the_distribution_includes_the_package() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatchcase("sandbox", pattern) for pattern in include)


@pytest.mark.parametrize("recording", RECORDINGS)
def test_every_recording_is_package_data(recording: str) -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"].get("sandbox", [])
    assert any(fnmatch.fnmatchcase(recording, pattern) for pattern in patterns), recording


def test_there_are_recordings_of_every_venue() -> None:
    assert {path.split("/")[1] for path in RECORDINGS} == {"binance", "dtc", "ibkr"}


def test_sandbox_mode_starts_modules_of_the_package(tmp_path: Path) -> None:
    specs = plan(Settings.from_env({"MDP_STATE_DIR": str(tmp_path)}), ROLES)
    venues = [spec for spec in specs if spec.name.startswith("fake-")]
    assert [spec.argv[1] for spec in venues] == ["sandbox.binance", "sandbox.tws", "sandbox.dtc"]
    for spec in venues:
        assert spec.argv[0] == "-m"
        assert importlib.util.find_spec(spec.argv[1]) is not None
        assert "PYTHONPATH" not in spec.env  # no reaching into a checkout
