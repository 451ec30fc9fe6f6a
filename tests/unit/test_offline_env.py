"""The offline defaults are written in one place (pipeline/environment.py) and every entry point
applies them from there, never over a value the user set."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.environment import OFFLINE_DEFAULTS, offline_env

REPO = Path(__file__).resolve().parents[2]
HOME = REPO / "pipeline" / "environment.py"
ENTRY_POINTS = (
    "pipeline/__main__.py",
    "flows/full_pipeline.py",
    "flows/nightly.py",
    "tests/conftest.py",
    "tests/e2e/servers.py",
)


def _python_files():
    for top in ("pipeline", "flows", "tests", "benchmarks"):
        yield from (p for p in (REPO / top).rglob("*.py") if p != Path(__file__).resolve())


def test_each_default_is_written_only_in_the_environment_module():
    keys = "|".join(map(re.escape, OFFLINE_DEFAULTS))
    written = {
        f"{p.relative_to(REPO)}: {m.group(0)}"
        for p in _python_files()
        if p != HOME
        for m in re.finditer(rf"[\"']({keys})[\"']", p.read_text(encoding="utf-8"))
    }
    assert not written, f"offline defaults written outside pipeline/environment.py: {written}"


def test_every_entry_point_applies_them():
    for rel in ENTRY_POINTS:
        assert "offline_env(" in (REPO / rel).read_text(encoding="utf-8"), rel


def test_defaults_fill_gaps_and_leave_the_users_values():
    env = offline_env({"MLFLOW_DISABLE_TELEMETRY": "false"})
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "false"  # the user's choice stands
    assert env["GX_ANALYTICS_ENABLED"] == "false" and "HF_HUB_OFFLINE" not in env
    assert offline_env({}, hub_offline=True)["HF_HUB_OFFLINE"] == "1"
    assert offline_env({"HF_HUB_OFFLINE": "0"}, hub_offline=True)["HF_HUB_OFFLINE"] == "0"
