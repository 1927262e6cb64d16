"""Running `mdp` roles as separate processes, as production does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def role_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``mdp ARGS`` with ``env`` over this environment, its output appended to ``log``.
    ``env`` is normally ``settings.to_env()`` (plus overrides), so the role reads the test's
    settings whatever this environment holds."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "mdp", *args], env={**os.environ, **env}, cwd=cwd,
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
