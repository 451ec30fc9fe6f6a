"""Stage `evaluate`: the base model and the new adapter on the held-out test split.

    python -m pipeline evaluate

For each: loss and perplexity on answer tokens (teacher-forced, token-weighted mean), and for
greedy answers to each test conversation's last user turn (gold history before it):
character-level ROUGE-L F1 and BLEU-4 (conventions in pipeline/textmetrics.py), the share of
answers that stop by themselves within `evaluate.max_new_tokens`, and the mean answer length.
Writes reports/metrics.json (read by `dvc metrics show`) and reports/eval_samples.jsonl, and
logs both to the pipeline's MLflow run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import textmetrics, tracking
from pipeline.config import Config
from pipeline.errors import DataValidationError
from pipeline.generation import Answer, answer_loss, generate
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.modeling import ModelSpec, load_model, load_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateResult:
    metrics: dict[str, dict[str, float]]
    samples: Path


def _last_turn(row: dict) -> tuple[list[dict[str, str]], str]:
    turns = row["conversations"]
    return turns[:-1], turns[-1]["content"]


def score(answers: list[Answer], references: list[str], loss: dict[str, Any]) -> dict[str, float]:
    texts = [a.text for a in answers]
    return {
        "answer_loss": round(loss["answer_loss"], 5),
        "perplexity": round(loss["perplexity"], 4),
        "rouge_l": round(textmetrics.mean([textmetrics.rouge_l(p, r) for p, r in zip(texts, references, strict=True)]), 5),
        "bleu4": round(textmetrics.mean([textmetrics.bleu4(p, r) for p, r in zip(texts, references, strict=True)]), 5),
        "stop_rate": round(textmetrics.mean([float(a.stopped) for a in answers]), 4),
        "mean_answer_chars": round(textmetrics.mean([float(len(t)) for t in texts]), 1),
    }


def _evaluate(model, tok, spec: ModelSpec, rows: list[dict], dataset, cfg: Config):
    histories, references = zip(*(_last_turn(r) for r in rows), strict=True)
    e = cfg.evaluate
    answers = generate(model, tok, spec, list(histories), e.max_new_tokens, e.batch_size, progress=True)
    return score(answers, list(references), answer_loss(model, tok, dataset, e.batch_size)), answers


def run(cfg: Config) -> EvaluateResult:
    import mlflow
    from datasets import load_from_disk
    from peft import PeftModel

    paths = cfg.paths
    rows = read_jsonl(paths.split_file("test"))
    dataset = load_from_disk(str(paths.processed_dir / "test"))
    if cfg.evaluate.max_samples:
        rows, dataset = rows[: cfg.evaluate.max_samples], dataset.select(range(min(cfg.evaluate.max_samples, len(dataset))))
    if not rows:
        raise DataValidationError(f"{paths.split_file('test')}: the test split is empty; add data or raise split.test_fraction")
    spec = ModelSpec.from_config(cfg)
    tok = load_tokenizer(ModelSpec.from_config(cfg, source=str(paths.adapter_dir)))
    model = load_model(spec).eval()
    log.info("evaluate: base on %d test conversations", len(rows))
    base_metrics, base_answers = _evaluate(model, tok, spec, rows, dataset, cfg)
    model = PeftModel.from_pretrained(model, str(paths.adapter_dir)).eval()
    log.info("evaluate: adapter")
    adapter_metrics, adapter_answers = _evaluate(model, tok, spec, rows, dataset, cfg)
    metrics = {"base": base_metrics, "adapter": adapter_metrics}
    write_json(paths.reports / "metrics.json", metrics)
    samples = paths.reports / "eval_samples.jsonl"
    write_jsonl(samples, (
        {"id": r["id"], "question": _last_turn(r)[0][-1]["content"], "reference": _last_turn(r)[1],
         "base": b.text, "adapter": a.text, "adapter_stopped": a.stopped}
        for r, b, a in zip(rows, base_answers, adapter_answers, strict=True)
    ))
    with tracking.resume_run(cfg):
        mlflow.log_metrics({f"eval/{who}/{k}": v for who, m in metrics.items() for k, v in m.items()})
        mlflow.log_artifact(str(samples), artifact_path="evaluation")
    log.info("evaluate: base %s | adapter %s", base_metrics, adapter_metrics)
    return EvaluateResult(metrics, samples)
