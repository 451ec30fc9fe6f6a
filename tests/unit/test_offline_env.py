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


def test_dvc_sends_no_usage_report_from_a_project_without_core_analytics(tmp_path, monkeypatch):
    """`dvc repro` started by the flows (or by a user's shell with the offline settings) in a DVC
    project of the user's own, whose .dvc/config does not say `core.analytics false`, would start
    a `dvc daemon analytics` after every command to send a usage report to analytics.dvc.org
    (DVC honours DVC_NO_ANALYTICS, not DO_NOT_TRACK)."""
    from dvc import analytics

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = storage\n")
    monkeypatch.chdir(tmp_path)
    for var in (*OFFLINE_DEFAULTS, "DVC_TEST", "DVC_NO_ANALYTICS"):
        monkeypatch.delenv(var, raising=False)
    assert analytics.is_enabled()  # DVC's own default: the report would be sent
    for var, value in offline_env({}).items():
        monkeypatch.setenv(var, value)
    assert not analytics.is_enabled()
