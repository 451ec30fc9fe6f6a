"""Stage `register`: log the adapter as an MLflow model, register a new version, gate it.

    python -m pipeline register

Every new version gets the alias `challenger`. `champion` moves to it only when the evaluation
beats the base by the margins in `register.gate`; the decision, each rule's value and verdict
are logged on the run (gate_decision.json), set as tags on the version and written to
reports/registration.json. A refused adapter is still registered (so it can be inspected), but
the champion does not move.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.config import Config, GateConfig
from pipeline.io import write_json
from pipeline.modeling import ModelSpec

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class GateRule:
    rule: str
    value: float
    threshold: float
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    rules: tuple[GateRule, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "rules": [asdict(r) for r in self.rules]}


def decide(metrics: dict[str, dict[str, float]], gate: GateConfig) -> GateDecision:
    """Compare the adapter with the base under the gate's margins."""
    base, new = metrics["base"], metrics["adapter"]
    rouge_gain = new["rouge_l"] - base["rouge_l"]
    bleu_gain = new["bleu4"] - base["bleu4"]
    loss_ratio = new["answer_loss"] / base["answer_loss"] if base["answer_loss"] > 0 else float("inf")
    rules = (
        GateRule("rouge_l_gain", round(rouge_gain, 5), gate.min_rouge_l_gain, rouge_gain >= gate.min_rouge_l_gain),
        GateRule("bleu4_gain", round(bleu_gain, 5), gate.min_bleu4_gain, bleu_gain >= gate.min_bleu4_gain),
        GateRule("loss_ratio", round(loss_ratio, 5), gate.max_loss_ratio, loss_ratio <= gate.max_loss_ratio),
    )
    return GateDecision(all(r.passed for r in rules), rules)


def _git_commit(root: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _requirements() -> list[str]:
    from importlib.metadata import version

    names = ["torch", "transformers", "peft", "accelerate", "bitsandbytes", "safetensors", "mlflow"]
    return [f"{n}=={version(n)}" for n in names]


def _log_model(cfg: Config, registered_name: str):
    """Log adapter (+ the tiny base, which exists nowhere else) as a pyfunc model and register it."""
    import mlflow

    from pipeline.chat import MedicalChatModel

    paths = cfg.paths
    spec = ModelSpec.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        # A hub base is referenced by id and revision, never copied into the registry.
        replace(spec, source="" if cfg.uses_builtin_base else spec.source).save(Path(tmp))
        artifacts = {"adapter": str(paths.adapter_dir), "spec": str(Path(tmp) / "base_model.json")}
        if cfg.uses_builtin_base:
            artifacts["base"] = str(paths.base_dir)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=MedicalChatModel(),
            artifacts=artifacts,
            pip_requirements=_requirements(),
            registered_model_name=registered_name,
        )


def run(cfg: Config) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    paths = cfg.paths
    metrics = json.loads((paths.reports / "metrics.json").read_text())
    decision = decide(metrics, cfg.register_.gate)
    name = cfg.register_.model_name
    with tracking.resume_run(cfg) as active:
        mlflow.log_dict(decision.as_dict(), "gate_decision.json")
        mlflow.set_tags({"gate.promote": str(decision.promote), "git_commit": _git_commit(cfg.root)})
        info = _log_model(cfg, name)
        version = str(info.registered_model_version)
        client = MlflowClient()
        client.set_registered_model_alias(name, CHALLENGER, version)
        tags = {"gate.promote": str(decision.promote), "base_model": cfg.model.base,
                "base_revision": cfg.model.revision, "run_id": active.info.run_id}
        tags |= {f"gate.{r.rule}": f"{r.value} ({'pass' if r.passed else 'fail'}; threshold {r.threshold})" for r in decision.rules}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version)
    failed = [r.rule for r in decision.rules if not r.passed]
    verdict = "promoted to champion" if decision.promote else f"NOT promoted (failed: {', '.join(failed)})"
    log.info("register: %s version %s %s", name, version, verdict)
    result = {"model_name": name, "version": int(version), "run_id": active.info.run_id,
              "aliases": [CHALLENGER] + ([CHAMPION] if decision.promote else []),
              "decision": decision.as_dict()}
    write_json(paths.reports / "registration.json", result)
    return result
