"""Faults of shared infrastructure, each tried on the real stack (after test_1's nightly run
registered version 1 from workspace B), and what the user sees.

- MLflow server stopped during `evaluate`: exit 5, one line naming the server, no gate.json.
- S3 store stopped during `register`'s upload: the stage fails, no new version, `champion`
  unchanged; with the store back, a rerun registers exactly one version.
- `dvc push` / `dvc pull` with the store down: a clear error after AWS_MAX_ATTEMPTS tries,
  the local data and cache intact.
- A wrong password: one line "MLflow: authentication failed for user trainer", no traceback.
- `viewer` promoting, and `trainer` moving `champion` while evaluate.gate.require_approval is
  on: refused by the server (403), `champion` unchanged.

MLFLOW_HTTP_REQUEST_MAX_RETRIES / AWS_MAX_ATTEMPTS are lowered so that each outage is
reported in seconds rather than after minutes of client back-off.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest

from team import accounts, proc
from tests.team.teamkit import dvc, git, run

pytestmark = pytest.mark.team
MODEL = "qwen-medical-lora"
FAST_FAIL = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "AWS_MAX_ATTEMPTS": "2",
}


@contextlib.contextmanager
def down(team, server: str):
    """`server` (s3 or mlflow) stopped by its pid; started again by `up` on the way out."""
    state = json.loads((team.stack.folder / "state.json").read_text())
    assert proc.stop(state["pids"][server], str(team.stack.folder)), f"{server} was not running"
    try:
        yield
    finally:
        team.stack.up()


def _pipeline(team, root, *args, account="trainer", **extra) -> subprocess.CompletedProcess:
    env = team.env(root, account, **FAST_FAIL, **extra)
    cmd = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)


def _error_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.startswith("error: ")]


def _versions(team) -> int:
    [(count,)] = team.sql("SELECT count(*) FROM model_versions WHERE name = %s", MODEL)
    return count


def test_mlflow_down_during_evaluate_fails_before_any_gate(team):
    gate = team.b / "reports" / "gate.json"
    decided = gate.read_bytes()  # the nightly run's decision: register (next test) reads it
    gate.unlink()
    url = team.stack.read_env()["MLFLOW_TRACKING_URI"]
    try:
        with down(team, "mlflow"):
            out = _pipeline(team, team.b, "evaluate")
        assert out.returncode == 5, out.stderr[-3000:]
        [line] = _error_lines(out)
        assert url in line and "Traceback" not in out.stderr, out.stderr[-3000:]
        assert not gate.exists()
    finally:
        gate.write_bytes(decided)


def test_store_down_during_register_leaves_no_version_then_registers_once(team):
    before, champion = _versions(team), team.version(MODEL, "champion")
    with down(team, "s3"):
        out = _pipeline(team, team.b, "register")
        assert out.returncode != 0, out.stderr[-3000:]
        assert len(_error_lines(out)) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
        assert _versions(team) == before
        assert team.version(MODEL, "champion") == champion
    out = _pipeline(team, team.b, "register")
    assert out.returncode == 0, out.stderr[-3000:]
    assert _versions(team) == before + 1
    # The gate passed, but it was decided (by the nightly run) against another champion than
    # the registry holds now: the version is registered and `champion` stays (rerun evaluate).
    assert team.version(MODEL, "champion") == champion
    assert "rerun evaluate" in out.stderr


def test_dvc_push_and_pull_with_the_store_down(team, tmp_path):
    raw = team.a / "data" / "raw" / "conversations.jsonl"
    text = raw.read_text(encoding="utf-8")
    extra = {
        "conversations": [
            {"role": "user", "content": "头痛怎么办？"},
            {"role": "assistant", "content": "注意休息，持续头痛请就医。"},
        ]
    }
    raw.write_text(text + json.dumps(extra, ensure_ascii=False) + "\n", encoding="utf-8")
    env_a = team.env(team.a, **FAST_FAIL)
    dvc(team.a, env_a, "add", "data/raw")
    c = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(team.origin), str(c))
    from team import services

    services.configure_dvc(c, team.stack.read_env())
    with down(team, "s3"):
        cmd = [sys.executable, "-m", "dvc"]
        push = subprocess.run(cmd + ["push"], cwd=team.a, env=env_a, capture_output=True, text=True)
        pull = subprocess.run(
            cmd + ["pull"], cwd=c, env=team.env(c, **FAST_FAIL), capture_output=True, text=True
        )
    for out in (push, pull):
        assert out.returncode != 0, out.stdout + out.stderr
        assert "ERROR" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert raw.read_text(encoding="utf-8").endswith('注意休息，持续头痛请就医。"}]}\n')
    status = dvc(team.a, team.env(team.a), "status", "data/raw.dvc")  # the cache holds it
    assert "up to date" in status, status
    dvc(team.a, env_a, "push")  # the store is back: it goes through
    git(team.a, "checkout", "data/raw.dvc")
    dvc(team.a, env_a, "checkout", "--force", "data/raw")


def test_wrong_password_is_one_line(team):
    out = _pipeline(team, team.a, "registry", "list", MLFLOW_TRACKING_PASSWORD="wrong")
    assert out.returncode != 0
    [line] = _error_lines(out)
    assert line.startswith("error: MLflow: authentication failed for user trainer"), line
    assert "Traceback" not in out.stderr and "wrong" not in out.stderr


def test_viewer_and_gated_trainer_cannot_move_champion(team):
    champion = team.version(MODEL, "champion")
    other = "1" if champion != 1 else "2"
    out = _pipeline(team, team.a, "registry", "promote", other, account="viewer")
    assert out.returncode != 0
    [line] = _error_lines(out)
    assert "user viewer may not do this" in line, line
    assert team.version(MODEL, "champion") == champion

    admin = team.stack.read_env("admin")
    api = accounts.Api(admin["MLFLOW_TRACKING_URI"], "admin", admin["MLFLOW_TRACKING_PASSWORD"])
    secrets = json.loads((team.stack.folder / "secrets.json").read_text())
    passwords = {u: secrets[u] for u in accounts.USERS}
    accounts.provision(api, passwords, MODEL, "qwen-medical", gated=True)
    try:
        out = _pipeline(team, team.a, "registry", "promote", other)
        assert out.returncode != 0
        [line] = _error_lines(out)
        assert "user trainer may not do this" in line and "MANAGE" in line, line
        assert team.version(MODEL, "champion") == champion
        # ... while `challenger` stays the trainer's to move
        status, _ = team.mlflow("trainer").call(
            "POST",
            "registered-models/alias",
            {"name": MODEL, "alias": "challenger", "version": other},
        )
        assert status == 200
        out = _pipeline(team, team.a, "registry", "promote", other, account="reviewer")
        assert out.returncode == 0, out.stderr[-2000:]
        assert team.version(MODEL, "champion") == int(other)
        run(
            [sys.executable, "-m", "pipeline", "registry", "rollback"],
            team.a,
            team.env(team.a, "reviewer"),
        )
        assert team.version(MODEL, "champion") == champion
    finally:
        accounts.provision(api, passwords, MODEL, "qwen-medical", gated=False)
