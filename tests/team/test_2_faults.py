"""Faults of shared infrastructure, each tried on the real stack (after test_1's nightly run
registered version 1 from workspace B), and what the user sees.

- MLflow server stopped during `evaluate`: exit 5, one line naming the server, no gate.json.
- S3 store stopped during `register`'s upload: the stage fails, no new version, `champion`
  unchanged; with the store back, a rerun registers exactly one version.
- `dvc push` / `dvc pull` with the store down: a clear error after AWS_MAX_ATTEMPTS tries,
  the local data and cache intact.
- A wrong password: one line "MLflow: authentication failed for user trainer", no traceback.
- `viewer` promoting, and `trainer` moving `champion` while evaluate.gate.require_approval is
  on: refused by the server (403), `champion` unchanged; a version gated against another
  champion than the current one is refused to the reviewer too, unless forced.
- The S3 store stopped while `chat`, `export` and `serve` fetch the champion: one line naming
  the store (exit 5), no traceback.
- PostgreSQL restarted under the Prefect and MLflow servers while a nightly run trains: the
  run ends (never hangs), Failed with the stage named or Completed, no run log line is lost;
  the next run resumes training from its checkpoint and one version is registered.

MLFLOW_HTTP_REQUEST_MAX_RETRIES / AWS_MAX_ATTEMPTS are lowered so that each outage is
reported in seconds rather than after minutes of client back-off.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import yaml

from team import accounts, proc
from tests.team.teamkit import dvc, git, run, saved_checkpoint_since

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


def test_store_down_chat_export_and_serve_name_the_store(team, tmp_path):
    """Issue 17: with the S3 store down, fetching the champion's artifacts through MLflow's
    proxy is one line naming the MLflow server and its artifact store, exit 5; `serve` says
    which version could not be loaded, and why."""
    url = team.stack.read_env()["MLFLOW_TRACKING_URI"]
    with down(team, "s3"):
        chat = _pipeline(team, team.a, "chat", "感冒有什么症状？", account="viewer")
        export = _pipeline(team, team.a, "export", "1", "--out", str(tmp_path / "x"))
        health = _serve_health(team, tmp_path)
    for out in (chat, export):
        assert out.returncode == 5, out.stderr[-3000:]
        [line] = _error_lines(out)
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert f"MLflow server at {url} could not read its artifact store" in line, line
    assert health["status"] == "no_model" and "could not be loaded" in health["message"]
    assert "could not read its artifact store" in health["last_error"], health


def _serve_health(team, tmp_path) -> dict:
    """`serve`'s /health once it tried to load the champion."""
    import time
    import urllib.error
    import urllib.request

    from tests.e2e import servers
    from tests.team.teamkit import start

    port = servers.free_port()
    env = team.env(team.a, "viewer", **FAST_FAIL)
    cmd = [sys.executable, "-m", "pipeline", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    server = start(cmd, team.a, env, log)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, servers.tail(log)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            except urllib.error.HTTPError as e:  # 503 until a version is served
                found = json.loads(e.read())
                if found.get("last_error"):
                    return found
            except OSError:
                pass
            time.sleep(1)
        raise AssertionError(f"serve never reported the failed load\n{servers.tail(log)}")
    finally:
        servers.stop(server)
        assert "Traceback" not in log.read_text(errors="replace"), servers.tail(log)


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
    # Version 2 was registered (test above) from a gate decided against no champion, version 1
    # holds it: refused, even to the reviewer, unless forced with a reason.
    out = _pipeline(team, team.a, "registry", "promote", other, account="reviewer")
    assert out.returncode == 5, out.stderr[-2000:]
    [line] = _error_lines(out)
    assert f"compared it against no champion, but the champion is now version {champion}" in line
    assert team.version(MODEL, "champion") == champion
    promote = ["registry", "promote", other, "--force", "--reason", "team test"]
    out = _pipeline(team, team.a, *promote, account="viewer")
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
        out = _pipeline(team, team.a, *promote)
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
        out = _pipeline(team, team.a, *promote, account="reviewer")
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


# While PostgreSQL is down the stage's MLflow calls give up after one try (the default of 7,
# with back-off, would outlast the outage: the stage then just waits): the run is interrupted
# in `train` for certain, unless training is too slow to reach its next MLflow flush (every 50
# steps) while the database is down; then it completes, which is fine too.
DB_DOWN_S = 30
MLFLOW_FAST_FAIL = {k: v for k, v in FAST_FAIL.items() if k.startswith("MLFLOW_")}


def test_postgres_restarted_during_train_then_the_next_run_resumes(team, tmp_path):
    """Issue 17: PostgreSQL, under both the Prefect and the MLflow server, is restarted (down
    DB_DOWN_S seconds, as a managed database's restart or failover is) while a nightly run
    trains. The run ends: Failed with the stage named in its state message, or Completed;
    none of its log lines is lost (Prefect's server answers 500 while its database refuses
    connections: the deployment's runs and the team's workers retry it); the training slot is
    released; the next run resumes training from its last checkpoint; one version is
    registered in all."""
    import time

    from team import postgres
    from tests.e2e import servers
    from tests.team.teamkit import Prefect, worker

    prefect = Prefect(team.stack.read_env())
    before = _versions(team)
    params = team.b / "params.yaml"
    tree = yaml.safe_load(params.read_text(encoding="utf-8"))
    tree["train"]["epochs"] = 40  # ~300 steps: checkpoints every 5 (conftest), flushes every 50
    params.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    git(team.b, "commit", "-q", "-am", "train longer (a params change: the nightly retrains)")
    checkpoints = team.b / "models" / "checkpoints"
    log = tmp_path / "worker.log"
    with worker(team, team.b, log, **MLFLOW_FAST_FAIL):
        started = time.time()
        first_id = prefect.trigger()
        deadline = time.monotonic() + 600
        while not saved_checkpoint_since(checkpoints, started):
            assert time.monotonic() < deadline, f"train saved no checkpoint\n{servers.tail(log)}"
            time.sleep(0.2)
        try:
            postgres.restart(team.stack.folder / "postgres", down_s=DB_DOWN_S)
        finally:
            if not team.stack.status()["postgres"]:
                team.stack.up()
        first = prefect.wait(first_id, 900, log)  # an AssertionError when it never ends
        runs = [first]
        if not first.state.is_completed():
            assert first.state.is_failed() or first.state.is_crashed(), first.state
            assert "stage train" in (first.state.message or ""), first.state.message
            runs.append(prefect.wait(prefect.trigger(), 900, log))
            assert runs[-1].state.is_completed(), (runs[-1].state, servers.tail(log))
            assert "resuming from checkpoint-" in _run_log(prefect, runs[-1].id)
    assert "registered version" in runs[-1].state.message, runs[-1].state.message
    assert "Error logging to API" not in log.read_text(errors="replace"), servers.tail(log)
    assert _versions(team) == before + 1
    limit = prefect("read_global_concurrency_limit_by_name", "qwen-medical-training")
    assert limit.active_slots == 0


def _run_log(prefect, flow_run_id) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    found = prefect(
        "read_logs", log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    )
    return "\n".join(entry.message for entry in found)
