"""The pipeline against a real MLflow tracking server, and one DAG for `dvc repro` and the flow.

The Prefect flow runs a tiny copy of the project from scratch with MLFLOW_TRACKING_URI pointing
at an `mlflow server` on a loopback port: the version lands on that server, nothing in the
project's local sqlite default. The flow tests' project (tests/e2e/flow_project.py: the same
rows and params) was built by `dvc repro`: both leave the same dvc.lock (stages, commands, deps,
params; outputs where they are bit-identical) and a clean `dvc status`.
"""

from __future__ import annotations

import sys

import pytest
import yaml

from pipeline.config import load_config
from tests.e2e import flow_project, servers

pytestmark = pytest.mark.slow
# Outputs holding an MLflow run id, timestamps or Data Docs renderings: their md5 differs from
# one execution to the next whatever ran them (two `dvc repro` runs differ the same way).
RUN_SPECIFIC = {
    "data/reports/validation/",  # GX Data Docs: run ids and times in the HTML and JSON
    # mlflow_run.json (the run id), adapter_config.json / README.md (the base's absolute path,
    # target_modules in set order); adapter_model.safetensors is compared below
    "models/adapter",
    "data/processed",  # state.json: datasets' random `_fingerprint`; the arrow data is compared
    "reports/train.json",  # wall-clock figures
    "reports/base.json",
    "reports/registration.json",  # run id
    "reports/metrics.json",  # generation timings
    "reports/eval_report.md",
    "reports/eval_report.html",
    "models/checkpoints",  # trainer state and run-specific files, not cached
}


def _status(root) -> str:
    return servers.run([sys.executable, "-m", "dvc", "status"], root, servers.env())


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def flow_project_on_server(tmp_path_factory, mlflow_url):
    """A fresh copy of the flow tests' project, run by the flow against the MLflow server."""
    tmp = tmp_path_factory.mktemp("flow-on-server")
    root = servers.dvc_project(tmp / "p", flow_project.ROWS, flow_project.OVERRIDES)
    environ = flow_project.flow_env(root, tmp, MLFLOW_TRACKING_URI=mlflow_url)
    servers.run([sys.executable, "-m", "flows.full_pipeline"], root, environ, timeout=900)
    return root


def test_pipeline_registers_on_the_mlflow_server(flow_project_on_server, mlflow_url):
    from mlflow import MlflowClient
    from pipeline.registry import fingerprint

    root = flow_project_on_server
    cfg = load_config(root / "params.yaml")
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    name = cfg.register_.model_name
    v1 = client.get_model_version_by_alias(name, "challenger")
    assert int(v1.version) == 1
    assert v1.tags["lineage.data_sha256"] == fingerprint.data_sha256(cfg)
    run = client.get_run(v1.run_id)
    assert run.data.params["train.lora.r"] == str(cfg.train.lora.r)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # served by the server
    files = client.list_artifacts(v1.run_id, "validation")
    assert [f.path for f in files] == ["validation/summary.json"]
    # Nothing went to the embedded default (sqlite + artifacts under the project's mlflow/).
    assert not (root / "mlflow").exists()
    assert "up to date" in _status(root)


def _lock(root) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _entries(stage: dict, kind: str) -> dict[str, str]:
    return {e["path"]: e.get("md5") for e in stage.get(kind, [])}


def test_flow_leaves_dvc_lock_as_dvc_repro_does(flow_project_on_server, flow_built):
    root, repro_project = flow_project_on_server, flow_built
    assert "up to date" in _status(root)

    by_repro, by_flow = _lock(repro_project), _lock(root)
    assert list(by_flow) == list(by_repro)
    differing = set()
    for name, expected in by_repro.items():
        got = by_flow[name]
        assert got["cmd"] == expected["cmd"], name
        assert got["params"] == expected["params"], name
        for kind in ("deps", "outs"):
            want, have = _entries(expected, kind), _entries(got, kind)
            assert set(have) == set(want), (name, kind)
            differing |= {p for p in want if have[p] != want[p]}
    # Code, data and every deterministic output (validated data, splits, the tiny base, the
    # tokenized data, the adapter weights inside models/adapter) hash the same; only files that
    # carry a run id or a clock differ.
    assert differing <= RUN_SPECIFIC, differing - RUN_SPECIFIC
    for path in ("data/raw", "data/validated/conversations.jsonl", "data/split", "models/base"):
        assert path not in differing
    for path in ["models/adapter/adapter_model.safetensors"] + [
        f.relative_to(root).as_posix() for f in (root / "data" / "processed").rglob("*.arrow")
    ]:
        assert (root / path).read_bytes() == (repro_project / path).read_bytes(), path
