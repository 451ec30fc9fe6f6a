"""Stage `evaluate`: base vs current champion vs the new adapter (challenger), and the gate.

    python -m pipeline evaluate

On the held-out test split, for each candidate: loss and perplexity on answer tokens
(teacher-forced, token-weighted mean) and, for greedy answers to each test conversation's last
user turn (gold history before it): ROUGE-1/2/L and BLEU-4 on characters, ROUGE-1/2/L on jieba
words, and behaviour checks (stops by itself within `evaluate.max_new_tokens`, leaks template
tokens, repeats itself, claims to be the base assistant, answer lengths). Conventions are in
pipeline/textmetrics.py. The champion is read from the registry (`models:/<name>@champion`)
and evaluated on its own base; with none, the comparison is two-way. The gate's decision
(pipeline/gate.py) is written to reports/gate.json for `register` to act on.

Writes reports/metrics.json (`dvc metrics show`), reports/eval_samples.jsonl, the report
reports/eval_report.md and .html, and logs all of it to the pipeline's MLflow run.
"""

from __future__ import annotations

import gc
import logging
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import report, textmetrics, tracking
from pipeline.config import Config
from pipeline.errors import DataValidationError
from pipeline.gate import GateDecision, decide
from pipeline.generation import Answer, answer_loss, generate
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.modeling import (
    ModelSpec,
    chat_messages,
    load_model,
    load_tokenizer,
    load_with_adapter,
)
from pipeline.preprocess import encode

log = logging.getLogger(__name__)

TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")
IDENTITY = re.compile(
    r"通义千问|我是\s*Qwen|I am Qwen|I'm Qwen|created by Alibaba|阿里云(开发|创建)", re.I
)


@dataclass(frozen=True)
class EvaluateResult:
    metrics: dict[str, dict[str, float]]
    decision: GateDecision
    report: Path


def _last_turn(row: dict) -> tuple[list[dict[str, str]], str]:
    turns = row["conversations"]
    return turns[:-1], turns[-1]["content"]


def score(answers: list[Answer], references: list[str], loss: dict[str, Any]) -> dict[str, float]:
    """Every metric of one candidate (see the module docstring for conventions)."""
    texts = [a.text for a in answers]
    pairs = list(zip(texts, references, strict=True))
    lengths = [float(len(t)) for t in texts]

    def avg(fn) -> float:
        return round(textmetrics.mean([fn(p, r) for p, r in pairs]), 5)

    return {
        "answer_loss": round(loss["answer_loss"], 5),
        "perplexity": round(loss["perplexity"], 4),
        "rouge1": avg(lambda p, r: textmetrics.rouge_n(p, r, 1)),
        "rouge2": avg(lambda p, r: textmetrics.rouge_n(p, r, 2)),
        "rouge_l": avg(textmetrics.rouge_l),
        "bleu4": avg(textmetrics.bleu4),
        "word_rouge1": avg(lambda p, r: textmetrics.rouge_n(p, r, 1, textmetrics.words)),
        "word_rouge2": avg(lambda p, r: textmetrics.rouge_n(p, r, 2, textmetrics.words)),
        "word_rouge_l": avg(lambda p, r: textmetrics.rouge_l(p, r, textmetrics.words)),
        "stop_rate": round(textmetrics.mean([float(a.stopped) for a in answers]), 4),
        "template_leak_rate": round(
            textmetrics.mean([float(any(t in a.raw for t in TEMPLATE_TOKENS)) for a in answers]), 4
        ),
        "identity_rate": round(
            textmetrics.mean([float(bool(IDENTITY.search(t))) for t in texts]), 4
        ),
        "repetition": round(textmetrics.mean([textmetrics.repetition(t) for t in texts]), 4),
        "answer_chars_p10": textmetrics.percentile(lengths, 0.1),
        "answer_chars_p50": textmetrics.percentile(lengths, 0.5),
        "answer_chars_p90": textmetrics.percentile(lengths, 0.9),
    }


def _loss(model, tok, spec: ModelSpec, rows: list[dict], cfg: Config) -> dict[str, Any]:
    """Answer-token loss with this candidate's own tokenizer and template."""
    from datasets import Dataset

    encoded = [
        encode(tok, chat_messages(spec, r["conversations"]), cfg.preprocess.max_seq_len)
        for r in rows
    ]
    return answer_loss(model, tok, Dataset.from_list(encoded), cfg.evaluate.batch_size)


def _measure(name: str, model, tok, spec: ModelSpec, rows: list[dict], cfg: Config):
    log.info("evaluate: %s", name)
    histories, references = zip(*(_last_turn(r) for r in rows), strict=True)
    e = cfg.evaluate
    answers = generate(
        model, tok, spec, list(histories), e.max_new_tokens, e.batch_size, progress=True
    )
    return score(answers, list(references), _loss(model, tok, spec, rows, cfg)), answers


def _base_and_challenger(spec: ModelSpec, adapter: Path, rows: list[dict], cfg: Config):
    """Both on one loaded base: the adapter is applied onto the model the base was scored with."""
    from peft import PeftModel

    model, tok = load_model(spec).eval(), load_tokenizer(spec)
    results = {"base": _measure("base", model, tok, spec, rows, cfg)}
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    adapter_tok = load_tokenizer(replace(spec, source=str(adapter)))
    results["challenger"] = _measure("challenger", model, adapter_tok, spec, rows, cfg)
    del model
    gc.collect()
    return results


def _champion_scores(champion: tuple[str, ModelSpec, Path], rows: list[dict], cfg: Config):
    """The champion on its own base (which may differ from today's), then freed."""
    _, spec, adapter = champion
    model, tok = load_with_adapter(spec, adapter)
    result = _measure("champion", model, tok, spec, rows, cfg)
    del model
    gc.collect()
    return result


def _champion(cfg: Config, into: Path) -> tuple[str, ModelSpec, Path] | None:
    """The registered champion's version, base spec and adapter, downloaded into `into`."""
    import mlflow
    from pipeline import registry

    c = registry.client(cfg)
    version = registry.champion_version(c, cfg.register_.model_name)
    if version is None:
        return None
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{cfg.register_.model_name}/{version}", dst_path=str(into)
        )
    )
    spec = ModelSpec.load(local / "artifacts")
    if (local / "artifacts" / "base").exists():
        spec = replace(spec, source=str(local / "artifacts" / "base"))
    return version, spec, local / "artifacts" / "adapter"


def _test_rows(cfg: Config) -> list[dict]:
    rows = read_jsonl(cfg.paths.split_file("test"))
    if cfg.evaluate.max_samples:
        rows = rows[: cfg.evaluate.max_samples]
    if not rows:
        raise DataValidationError(
            f"{cfg.paths.split_file('test')}: the test split is empty; "
            "add data or raise split.test_fraction"
        )
    return rows


def run(cfg: Config) -> EvaluateResult:
    import mlflow

    paths = cfg.paths
    rows = _test_rows(cfg)
    spec = ModelSpec.from_config(cfg)
    results = _base_and_challenger(spec, paths.adapter_dir, rows, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        champion = _champion(cfg, Path(tmp))
        if champion is not None:
            results["champion"] = _champion_scores(champion, rows, cfg)
    order = [n for n in ("base", "champion", "challenger") if n in results]  # report columns
    metrics = {n: results[n][0] for n in order}
    answers: dict[str, list[Answer]] = {n: results[n][1] for n in order}
    decision = decide(metrics, cfg.evaluate.gate)
    champion_version = champion[0] if champion else None
    write_json(paths.reports / "metrics.json", metrics)
    write_json(
        paths.reports / "gate.json", {**decision.as_dict(), "champion_version": champion_version}
    )
    samples = [
        {
            "id": r["id"],
            "question": _last_turn(r)[0][-1]["content"],
            "reference": _last_turn(r)[1],
            **{name: answers[name][i].text for name in answers},
        }
        for i, r in enumerate(rows)
    ]
    write_jsonl(paths.reports / "eval_samples.jsonl", samples)
    md, html = report.render(
        metrics, decision, samples[: cfg.evaluate.report_samples], champion_version
    )
    (paths.reports / "eval_report.md").write_text(md, encoding="utf-8")
    (paths.reports / "eval_report.html").write_text(html, encoding="utf-8")
    with tracking.resume_run(cfg):
        mlflow.log_metrics(
            {f"eval/{who}/{k}": v for who, m in metrics.items() for k, v in m.items()}
        )
        mlflow.log_dict(decision.as_dict(), "gate_decision.json")
        for name in ("eval_samples.jsonl", "eval_report.md", "eval_report.html"):
            mlflow.log_artifact(str(paths.reports / name), artifact_path="evaluation")
    verdict = "promote" if decision.promote else f"refuse ({', '.join(decision.failed)})"
    log.info("evaluate: %s; gate: %s", {k: m["rouge_l"] for k, m in metrics.items()}, verdict)
    return EvaluateResult(metrics, decision, paths.reports / "eval_report.html")
