"""No secret of the stack leaks into what a team shares or commits.

After the nightly run and the fault tests, every password and S3 key the stack was started
with is searched for in: MLflow runs' params and tags, model versions' tags, every object in
the S3 buckets (MLflow artifacts and the DVC remote), Prefect artifacts and flow-run logs,
`dvc.lock` and reports/ of the training workspace, and every file of every commit in the
shared git origin. None may appear."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.team.teamkit import Prefect

pytestmark = pytest.mark.team
MODEL = "qwen-medical-lora"


def _secrets(team) -> dict[str, str]:
    found = json.loads((team.stack.folder / "secrets.json").read_text())
    return {name: value for name, value in found.items() if len(value) >= 12}


def _hits(texts: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [
        f"{secret_name} in {where}"
        for where, data in texts.items()
        for secret_name, secret in secrets.items()
        if secret.encode() in data
    ]


def _mlflow_texts(team) -> dict[str, bytes]:
    api = team.mlflow("admin")
    texts = {}
    experiments = api.must("POST", "experiments/search", {"max_results": 100})["experiments"]
    ids = [e["experiment_id"] for e in experiments]
    for found in api.must("POST", "runs/search", {"experiment_ids": ids, "max_results": 1000}).get(
        "runs", []
    ):
        texts[f"run {found['info']['run_id']}"] = json.dumps(found["data"]).encode()
    versions = api.must("GET", "model-versions/search", {"filter": f"name='{MODEL}'"})
    texts["model versions"] = json.dumps(versions).encode()
    texts["registered model"] = json.dumps(
        api.must("GET", "registered-models/get", {"name": MODEL})
    ).encode()
    return texts


def _bucket_texts(team) -> dict[str, bytes]:
    s3, texts = team.s3(), {}
    for bucket in ("mlflow", "dvc"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                texts[f"s3://{bucket}/{obj['Key']}"] = body
    return texts


def _prefect_texts(team) -> dict[str, bytes]:
    prefect = Prefect(team.stack.read_env())
    artifacts = prefect("read_artifacts")
    logs = prefect("read_logs")
    runs = prefect("read_flow_runs")
    return {
        "prefect artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]).encode(),
        "prefect logs": "\n".join(log.message for log in logs).encode(),
        "prefect flow runs": json.dumps([r.model_dump(mode="json") for r in runs]).encode(),
    }


def _workspace_texts(team) -> dict[str, bytes]:
    texts = {}
    for root in (team.a, team.b):
        if (root / "dvc.lock").exists():  # A never ran the pipeline
            texts[f"{root.name}/dvc.lock"] = (root / "dvc.lock").read_bytes()
        for path in (root / "reports").rglob("*") if (root / "reports").exists() else []:
            if path.is_file():
                texts[str(path.relative_to(root))] = path.read_bytes()
    # every file of every commit in the shared origin
    git = ["git", "-C", str(team.origin)]
    commits = subprocess.run(git + ["rev-list", "--all"], capture_output=True, text=True)
    for commit in commits.stdout.split():
        names = subprocess.run(
            git + ["ls-tree", "-r", "--name-only", commit], capture_output=True, text=True
        ).stdout.split("\n")
        for name in filter(None, names):
            blob = subprocess.run(git + ["show", f"{commit}:{name}"], capture_output=True)
            texts[f"git {commit[:8]}:{name}"] = blob.stdout
    return texts


def test_no_password_or_key_anywhere_shared(team):
    secrets = _secrets(team)
    assert {"trainer", "admin", "s3_secret", "prefect", "db_mlflow"} <= set(secrets)
    texts = _mlflow_texts(team) | _bucket_texts(team) | _prefect_texts(team)
    texts |= _workspace_texts(team)
    assert len(texts) > 50 and any(k.startswith("s3://mlflow/") for k in texts)
    # the search finds a secret where there is one
    assert _hits({"planted": b"x" + secrets["trainer"].encode() + b"x"}, secrets)
    assert not _hits(texts, secrets)
