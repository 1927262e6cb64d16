"""`mdp run` in sandbox mode from an installed wheel, not the checkout: the sandbox venues and
their recordings ship with the package, so data lands without the source tree."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from marketdata.settings import Settings
from tests.e2e.test_run import _env, run_dtc_for_25_s

ROOT = Path(__file__).resolve().parents[2]


def _install_wheel(into: Path) -> Path:
    """Build the project's wheel and install it, without its dependencies (the test's own
    environment has them), into ``into``; return that directory."""
    wheels = into / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    site = into / "site"
    (wheel,) = wheels.glob("marketdata_pipeline-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    return site


async def test_mdp_run_from_an_installed_wheel_stores_sandbox_data(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    site = await asyncio.to_thread(_install_wheel, tmp_path)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # PYTHONPATH puts the wheel's packages before the checkout's editable install.
    env = {**_env(settings, unique), "PYTHONPATH": str(site), "MDP_STATE_DIR": str(workdir)}
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import mdp, sandbox; print(mdp.__file__, sandbox.__file__)",
        cwd=workdir, env=env, stdout=subprocess.PIPE,
    )  # fmt: skip
    where = (await probe.communicate())[0].decode().split()
    assert len(where) == 2
    assert all(path.startswith(str(site)) for path in where), where

    board = await run_dtc_for_25_s(env, workdir)
    lines = [line.split() for line in board.splitlines()]
    header = next(line for line in lines if line[:2] == ["kind", "exchange"])
    rows = [line for line in lines if line[:3] == ["ticks", "CME", "ESZ4"]]
    assert rows, board
    assert int(rows[0][header.index("rows")].replace(",", "")) > 0, board
