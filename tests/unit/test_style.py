"""The code passes the project's ruff rules (pyproject.toml), so `make test` catches what review would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test requirement (requirements-test.txt)"
    run = subprocess.run(
        [ruff, "check", "labsupport", "tests", "scripts"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
