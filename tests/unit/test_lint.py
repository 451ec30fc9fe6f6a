"""The code stays ruff-clean (rules and line length in pyproject.toml)."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_check_passes():
    dirs = ["pipeline", "flows", "tests", "benchmarks", "configs", "docs", "tools", "team", "data"]
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *dirs], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
