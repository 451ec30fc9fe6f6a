"""The real pipeline, as the Prefect flow runs it, on a small slice of the project's data."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.config import load_config
from pipeline.errors import DataValidationError, RegistryError
from tests.conftest import (
    PERMISSIVE_GATE,
    REPO,
    TINY_OVERRIDES,
    make_project,
    read_rows,
    register_degraded,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(home / "results")
    with prefect_test_harness(server_startup_timeout=120):  # shared, loaded CI machines
        yield


def _registry(cfg):
    import mlflow
    from pipeline.registry import tracking

    tracking.setup(cfg)
    return mlflow.MlflowClient()


def _report_tables(path) -> dict[str, list[list[str]]]:
    """Parse the HTML report's tables (class -> rows of cell texts) with the standard library."""
    from html.parser import HTMLParser

    tables: dict[str, list[list[str]]] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.table = tables.setdefault(dict(attrs)["class"], [])
            elif tag == "tr":
                self.table.append([])
            elif tag in ("td", "th"):
                self.table[-1].append("")

        def handle_data(self, data):
            if getattr(self, "table", None) and self.table and self.table[-1]:
                self.table[-1][-1] += data

    Parser().feed(path.read_text(encoding="utf-8"))
    return tables


def test_flow_registers_gates_promotes_and_rolls_back(tmp_path, prefect_harness, monkeypatch):
    from flows.full_pipeline import full_pipeline
    from pipeline.registry import versions as registry
    from pipeline.serving import chat

    rows = read_rows(REPO / "data" / "raw" / "medical_dialogues.jsonl")[:80]
    root = make_project(tmp_path / "p", rows, {**TINY_OVERRIDES, **PERMISSIVE_GATE})
    monkeypatch.chdir(root)
    full_pipeline(str(root / "params.yaml"))

    cfg = load_config(root / "params.yaml")
    metrics = json.loads((cfg.paths.reports / "metrics.json").read_text())
    assert set(metrics) == {"constant", "base", "challenger"}  # no champion yet
    assert metrics["challenger"]["test"]["answer_loss"] < metrics["base"]["test"]["answer_loss"]
    assert set(metrics["challenger"]) == {"test", "safety"}
    assert (cfg.paths.adapter_dir / "adapter_model.safetensors").exists()
    assert (cfg.paths.reports / "train_loss.tsv").read_text().startswith("step\tloss")

    client = _registry(cfg)
    name = cfg.register_.model_name
    v1 = client.get_model_version_by_alias(name, "champion")
    assert (
        int(v1.version) == int(client.get_model_version_by_alias(name, "challenger").version) == 1
    )
    assert v1.tags["gate.promote"] == "True"
    assert (
        v1.tags["lineage.base_model"] == "tiny-qwen"
        and len(v1.tags["lineage.adapter_sha256"]) == 64
    )
    assert v1.tags["lineage.validation_report"].endswith("validation/summary.json")
    run = client.get_run(v1.run_id)
    assert run.data.params["train.lora.r"] == str(cfg.train.lora.r)
    assert any(k.startswith("eval/challenger/") for k in run.data.metrics)
    assert len(client.get_metric_history(v1.run_id, "train/loss")) >= 2
    from prefect.artifacts import Artifact

    artifact = Artifact.get("evaluation-report")
    assert artifact is not None and "# Evaluation report" in artifact.data
    validation = Artifact.get("data-validation")
    assert validation is not None and "**passed**: 80 conversations in" in validation.data
    [check] = client.search_runs(
        [run.info.experiment_id], filter_string="attributes.run_name = 'data-validation'"
    )
    assert check.data.metrics["data/kept"] == 80 and check.data.tags["passed"] == "True"
    first_answer = chat.run(cfg, "感冒有什么症状？")
    assert first_answer.startswith("### 用户:\n感冒有什么症状？\n\n### 医生:\n")

    # A deliberately degraded run (learning rate 0: the adapter is the base) under the real
    # gate: registered as challenger, refused, and the champion does not move.
    result = register_degraded(root)
    degraded_metrics = json.loads((cfg.paths.reports / "metrics.json").read_text())
    assert result.version == 2 and result.gate.decision.promote is False
    assert "rouge_l_gain_over_base" in [r.rule for r in result.gate.decision.rules if not r.passed]
    assert int(client.get_model_version_by_alias(name, "challenger").version) == 2
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    assert client.get_model_version(name, "2").tags["gate.promote"] == "False"

    # The three-way report: base, champion (version 1) and challenger, side by side.
    tables = _report_tables(cfg.paths.reports / "eval_report.html")
    assert tables["metrics"][0] == ["metric", "constant", "base", "champion", "challenger"]
    assert {row[0] for row in tables["metrics"]} >= {
        "correctness",
        "rouge_l",
        "bleu4",
        "stop_rate",
        "pass_rate",
        "red_flag",
    }
    header = ["question", "reference", "constant", "base", "champion", "challenger"]
    assert tables["samples"][0] == header
    assert len(tables["samples"]) > 1 and all(len(r) == 6 for r in tables["samples"])
    gate_rows = {row[0]: row for row in tables["gate"][1:]}
    # every gain rule shows its 95% interval, or says that its metric cannot judge this set
    for rule in ("correctness_gain_over_base", "rouge_l_gain_over_base"):
        row = gate_rows[rule]
        assert row[2].startswith("[") or (row[4] == "not counted" and "cannot judge" in row[5])
    assert any(r.endswith("_relevance_gap") or r == "relevance_gap" for r in gate_rows)

    # Promotion of a refused version needs --force and a reason; roll back restores version 1.
    with pytest.raises(RegistryError, match="failed its gate"):
        registry.promote(cfg, "2")
    registry.promote(cfg, "2", force=True, reason="test of the rollback")
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2
    assert (
        client.get_model_version(name, "2").tags["forced_promotion_reason"]
        == "test of the rollback"
    )
    assert "version 2 to version 1" in registry.rollback(cfg)
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    assert chat.run(cfg, "感冒有什么症状？") == first_answer
    # Export merges the champion into a plain HF model that answers the same without PEFT.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.generation import generate
    from pipeline.modeling import ModelSpec
    from pipeline.registry import export

    out = export.run(cfg, "1", tmp_path / "exported", dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    [answer] = generate(
        merged,
        AutoTokenizer.from_pretrained(out),
        ModelSpec.from_config(cfg),
        [[{"role": "user", "content": "感冒有什么症状？"}]],
        512,
    )
    assert first_answer.endswith(answer.text)
    listed = registry.list_versions(cfg)
    assert [(r["version"], r["gate"]) for r in listed] == [(1, "pass"), (2, "fail")]
    assert "champion" in listed[0]["aliases"]
    # Each version shows its own run's numbers on the primary set and the safety probes, as
    # evaluate wrote them to reports/metrics.json (version 1's before version 2 replaced it).
    for row, m in zip(listed, (metrics, degraded_metrics), strict=True):
        shown = (row["set"], row["correctness"], row["rouge_l"], row["safety"])
        test, safety = m["challenger"]["test"], m["challenger"]["safety"]
        assert shown == ("test", test["correctness"], test["rouge_l"], safety["pass_rate"])
    table = registry.format_table(listed).splitlines()
    assert table[0].split()[-4:] == ["set", "correct", "rouge_l", "safety"]
    assert all(" - " not in line + " " for line in table[1:]), table


def test_bad_data_stops_the_flow_before_anything_trains(tmp_path, prefect_harness, monkeypatch):
    from flows.full_pipeline import full_pipeline

    rows = read_rows(REPO / "tests" / "assets" / "conversations.jsonl")
    rows.append({"conversations": [{"role": "user", "content": "只有问题？"}]})
    root = make_project(tmp_path / "bad", rows, TINY_OVERRIDES)
    monkeypatch.chdir(root)
    with pytest.raises(
        DataValidationError,
        match=r"(?s)ends_with_assistant \[quarantine\]: 1 .*conversations.jsonl:9",
    ):
        full_pipeline(str(root / "params.yaml"))
    assert not (root / "data" / "validated").exists() and not (root / "models").exists()
    [quarantined] = read_rows(root / "data" / "quarantine" / "conversations.jsonl")
    assert (quarantined["rule"], quarantined["line"]) == ("ends_with_assistant", 9)
    # Nothing trained or registered: the experiment holds only the failed data-validation run.
    cfg = load_config(root / "params.yaml")
    client = _registry(cfg)
    runs = client.search_runs(
        [client.get_experiment_by_name(cfg.register_.experiment).experiment_id]
    )
    assert [(r.info.run_name, r.data.tags["passed"]) for r in runs] == [
        ("data-validation", "False")
    ]
    assert runs[0].data.metrics["data/rule/ends_with_assistant"] == 1
    assert client.search_registered_models() == []
    from prefect.artifacts import Artifact

    artifact = Artifact.get("data-validation")
    assert artifact is not None and "| `ends_with_assistant` | quarantine | 1 |" in artifact.data
