"""The real pipeline, as the Prefect flow runs it, on a small slice of the project's data."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.config import load_config
from pipeline.errors import DataValidationError
from tests.conftest import REPO, TINY_OVERRIDES, make_project, read_rows

pytestmark = pytest.mark.slow
PERMISSIVE_GATE = {
    "register.gate.min_rouge_l_gain": -1.0,
    "register.gate.min_bleu4_gain": -1.0,
    "register.gate.max_loss_ratio": 100.0,
}


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(home / "results")
    with prefect_test_harness():
        yield


def _registry(cfg):
    import mlflow

    from pipeline import tracking

    tracking.setup(cfg)
    return mlflow.MlflowClient()


def test_flow_runs_every_stage_and_registers_a_champion(tmp_path, prefect_harness, monkeypatch):
    from flows.full_pipeline import full_pipeline
    from pipeline import chat, register

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:80]
    root = make_project(tmp_path / "p", rows, {**TINY_OVERRIDES, **PERMISSIVE_GATE})
    monkeypatch.chdir(root)
    full_pipeline(str(root / "params.yaml"))

    cfg = load_config(root / "params.yaml")
    metrics = json.loads((cfg.paths.reports / "metrics.json").read_text())
    assert set(metrics) == {"base", "adapter"}
    assert metrics["adapter"]["answer_loss"] < metrics["base"]["answer_loss"]
    assert (cfg.paths.adapter_dir / "adapter_model.safetensors").exists()
    assert (cfg.paths.reports / "train_loss.tsv").read_text().startswith("step\tloss")

    client = _registry(cfg)
    name = cfg.register_.model_name
    v1 = client.get_model_version_by_alias(name, "champion")
    assert int(v1.version) == int(client.get_model_version_by_alias(name, "challenger").version) == 1
    assert v1.tags["gate.promote"] == "True"
    run = client.get_run(v1.run_id)
    assert run.data.params["train.lora.r"] == str(cfg.train.lora.r)
    assert any(k.startswith("eval/adapter/") for k in run.data.metrics)
    assert len(client.get_metric_history(v1.run_id, "train/loss")) >= 2

    answer = chat.run(cfg, "感冒有什么症状？")
    assert answer.startswith("### 用户:\n感冒有什么症状？\n\n### 医生:\n")

    # A stricter gate: the next version is registered as challenger, the champion stays.
    strict = load_config(root / "params.yaml", {"register.gate.min_rouge_l_gain": 2.0})
    result = register.run(strict)
    assert result["version"] == 2 and result["decision"]["promote"] is False
    assert int(client.get_model_version_by_alias(name, "challenger").version) == 2
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    assert client.get_model_version(name, "2").tags["gate.promote"] == "False"


def test_bad_data_stops_the_flow_before_anything_trains(tmp_path, prefect_harness, monkeypatch):
    from flows.full_pipeline import full_pipeline

    rows = read_rows(REPO / "tests" / "assets" / "conversations.jsonl")
    rows.append({"conversations": [{"role": "user", "content": "只有问题？"}]})
    root = make_project(tmp_path / "bad", rows, TINY_OVERRIDES)
    monkeypatch.chdir(root)
    with pytest.raises(DataValidationError, match=r"ends_with_assistant.*conversations.jsonl:9"):
        full_pipeline(str(root / "params.yaml"))
    cfg = load_config(root / "params.yaml")
    assert not (root / "data" / "validated").exists() and not (root / "models").exists()
    assert not (root / "mlflow" / "mlflow.db").exists()
