"""Two machines of a team on one stack (PostgreSQL, S3, MLflow, Prefect; docs/team.md).

Workspace A adds conversations, `dvc push`es them to the S3 remote and pushes data/raw.dvc to
the bare git origin. The training machine B pulls git (what its nightly cron does before the
run), and the nightly deployment runs on B's worker with `data_sync=pull`: `dvc pull` from S3,
train, evaluate against the champion read from the shared registry, register. The version's
artifacts are objects in the `mlflow` bucket and its rows are in PostgreSQL; no `mlflow/`
folder appears in either workspace. A then chats with and serves `@champion` (artifacts
fetched through the server) and `registry lineage` shows the md5 of the data A pushed. A
second nightly run is skipped; two runs triggered at once on two workers are serialized by the
deployment's concurrency limit, and `champion` does not move.
"""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest
import yaml

from tests.conftest import REPO, read_rows
from tests.e2e import servers
from tests.team.teamkit import Prefect, dvc, git, run, start, worker

pytestmark = pytest.mark.team
MODEL = "qwen-medical-lora"
NEW_ROWS = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[60:70]


def _a_pushes_new_conversations(team) -> str:
    """A's commit: 10 more conversations, pushed to S3 and git; the md5 of data/raw."""
    env = team.env(team.a)
    raw = team.a / "data" / "raw" / "conversations.jsonl"
    with raw.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in NEW_ROWS)
    dvc(team.a, env, "add", "data/raw")
    dvc(team.a, env, "push")
    git(team.a, "add", "data/raw.dvc")
    git(team.a, "commit", "-q", "-m", "10 new conversations")
    git(team.a, "push", "-q")
    return yaml.safe_load((team.a / "data" / "raw.dvc").read_text())["outs"][0]["md5"]


def test_nightly_on_b_trains_what_a_pushed_and_a_serves_it(team, tmp_path):
    md5 = _a_pushes_new_conversations(team)
    git(team.b, "pull", "-q")
    assert not (team.b / "data" / "raw").exists()  # only the .dvc file came with git
    prefect = Prefect(team.stack.read_env())
    log = tmp_path / "worker-b.log"
    with worker(team, team.b, log):
        first = prefect.wait(prefect.trigger(data_sync="pull"), 1200, log)
        assert first.state.is_completed(), (first.state, servers.tail(log))
        assert "registered version 1" in first.state.message, first.state.message
    pulled = (team.b / "data" / "raw" / "conversations.jsonl").read_text(encoding="utf-8")
    assert NEW_ROWS[-1]["conversations"][0]["content"] in pulled  # A's data, through S3

    # Rows in PostgreSQL, artifacts in the bucket, nothing in a local store.
    [(where,)] = team.sql("SELECT storage_location FROM model_versions WHERE name = %s", MODEL)
    # proxied (clients need no S3 key): the server's artifacts/ in the bucket; MLflow 3 keeps a
    # logged model under <experiment>/models/m-<id>/, not under its run
    assert where.startswith("mlflow-artifacts:/"), where
    prefix = "artifacts/" + where.removeprefix("mlflow-artifacts:/")
    pages = team.s3().get_paginator("list_objects_v2").paginate(Bucket="mlflow", Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(k.endswith("adapter_model.safetensors") for k in keys), (where, keys[:20])
    assert not (team.a / "mlflow").exists() and not (team.b / "mlflow").exists()
    assert team.version(MODEL, "champion") == 1

    # A: chat and serve @champion from the shared registry; lineage names A's data.
    env_a = team.env(team.a)
    answer = run([sys.executable, "-m", "pipeline", "chat", "感冒有什么症状？"], team.a, env_a)
    assert answer.strip()
    lineage = run([sys.executable, "-m", "pipeline", "registry", "lineage", "1"], team.a, env_a)
    assert md5 in lineage, lineage
    _serve_answers(team, tmp_path)
    assert not (team.a / "mlflow").exists()


def _serve_answers(team, tmp_path) -> None:
    port = servers.free_port()
    cmd = [sys.executable, "-m", "pipeline", "serve", "--port", str(port)]
    log = tmp_path / "serve.log"
    proc = start(cmd, team.a, team.env(team.a), log)
    try:
        servers.wait_healthy(f"http://127.0.0.1:{port}/health", proc, log, 300)
        body = {"messages": [{"role": "user", "content": "感冒有什么症状？"}], "max_tokens": 8}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"], answer
    finally:
        servers.stop(proc)


def test_unchanged_data_skips_and_two_runs_at_once_are_serialized(team, tmp_path):
    prefect = Prefect(team.stack.read_env())
    champion = team.version(MODEL, "champion")
    assert champion is not None, "needs the version the first test registered"
    log1, log2 = tmp_path / "w1.log", tmp_path / "w2.log"
    with worker(team, team.b, log1, "w1"), worker(team, team.b, log2, "w2"):
        ids = [prefect.trigger(data_sync="pull"), prefect.trigger(data_sync="pull")]
        done = [prefect.wait(i, 900, log1) for i in ids]
    for found in done:
        assert found.state.is_completed(), (found.state, servers.tail(log1), servers.tail(log2))
        assert found.state.message.startswith("skipped: data, params and code unchanged")
    first, second = sorted(done, key=lambda r: r.start_time)
    assert first.end_time <= second.start_time, "the two runs overlapped"
    assert team.version(MODEL, "champion") == champion
    [(count,)] = team.sql("SELECT count(*) FROM model_versions WHERE name = %s", MODEL)
    assert count == 1
