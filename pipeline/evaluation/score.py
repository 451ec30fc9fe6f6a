"""`python -m pipeline score`: score any model on any conversation file, as `evaluate` would.

    python -m pipeline score --base FILE...            # the configured base model
    python -m pipeline score --version 3 FILE...       # a registered version (on its own base)
    python -m pipeline score --alias champion FILE...  # the version an alias points at

Each FILE is a set: a conversation file in any JSON format ingest reads (project, ShareGPT,
OpenAI, conversation, Alpaca; JSON array or JSON Lines; UTF-8 or GB18030), whose last assistant
turn, when present, is the reference answer; or a JSON Lines file of safety probes
({id, category, prompt} or {id, category, messages}); with no FILE, every configured probe
set (`evaluate.safety_probes` and the safety sets of `evaluate.sets`). The scores are the
evaluation's own (evaluation/scoring.py), next to the constant-answer baseline from the
training split when one exists, with 95% paired
bootstrap intervals of the model's gain over that baseline. Writes score.json, samples.jsonl
and report.{md,html} under `--out` (default reports/score/); never touches the registry.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.evaluation import evalsets, report, scoring
from pipeline.evaluation.candidates import (
    answer_sets,
    constant_baseline,
    samples_of,
    summarize,
    training_answers,
)
from pipeline.evaluation.results import (
    Candidate,
    EvalMetrics,
    GateDecision,
    GateRule,
    Metric,
    SetKind,
)
from pipeline.evaluation.stats import paired_bootstrap
from pipeline.io import write_json, write_jsonl
from pipeline.modeling import ModelSpec, load_model, load_tokenizer, load_with_adapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    model: str
    metrics: EvalMetrics
    intervals: dict[str, dict[str, float | int]]
    out: Path


def _model(cfg: Config, tmp: Path, version: str | None, alias: str | None, base: bool):
    from pipeline.registry.versions import download_version

    if base:
        spec = ModelSpec.from_config(cfg)
        return f"base ({spec.source})", load_model(spec).eval(), load_tokenizer(spec), spec
    found = download_version(cfg, tmp, version=version, alias=alias)
    if found is None:
        raise PipelineError(f"registry: alias {alias or 'champion'!r} points at no version")
    number, spec, adapter = found
    model, tok = load_with_adapter(spec, adapter)
    return f"version {number}", model, tok, spec


def _over_constant(cfg: Config, sets: dict, scores: dict, c_scores: dict):
    """(intervals, gate-style rules) of the model's gain over the constant answer, per
    reference set and metric (paired bootstrap)."""
    rules = []
    intervals: dict[str, dict[str, float | int]] = {}
    for s, items in sets.items():
        if items[0].kind != SetKind.REFERENCE:
            continue
        for metric in (Metric.CORRECTNESS, Metric.ROUGE_L):
            iv = paired_bootstrap(
                scoring.per_item(scores[s], metric),
                scoring.per_item(c_scores[s], metric),
                cfg.evaluate.bootstrap.resamples,
                cfg.evaluate.bootstrap.seed,
            )
            intervals[f"{s}/{metric}_over_constant"] = iv.as_dict()
            rules.append(
                GateRule.gain(f"{s}: {metric} over constant", iv, 1e-9, "model minus constant")
            )
    return intervals, rules


def _write(
    cfg: Config,
    out: Path,
    label: str,
    sets: dict,
    all_scores: dict,
    metrics: EvalMetrics,
    intervals,
    rules,
):
    """score.json, samples.jsonl and report.{md,html} under `out`."""
    decision = GateDecision.of(rules)
    kinds = {s: items[0].kind for s, items in sets.items()}
    samples = samples_of(all_scores)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "score.json", {"model": label, "metrics": metrics.as_dict(), "intervals": intervals}
    )
    write_jsonl(out / "samples.jsonl", samples)
    md, page = report.render(
        metrics,
        decision,
        samples,
        kinds,
        None,
        cfg.evaluate.report_samples,
        title=f"Scores of {label}",
    )
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(page, encoding="utf-8")


def probe_files(cfg: Config) -> list[Path]:
    """The configured probe files (`evaluate.safety_probes` and every `evaluate.sets` entry of
    kind safety): what `score` reads when it is given no file."""
    e = cfg.evaluate
    paths = [e.safety_probes] if e.safety_probes else []
    paths += [s.path for s in e.sets if s.kind == "safety"]
    if not paths:
        raise PipelineError("score: no file given and no probe set configured")
    return [cfg.root / p for p in paths]


def run(
    cfg: Config,
    files: list[Path],
    version: str | None = None,
    alias: str | None = None,
    base: bool = False,
    out: Path | None = None,
) -> ScoreResult:
    if sum([version is not None, alias is not None, base]) != 1:
        raise PipelineError("score: give exactly one of --version, --alias, --base")
    out = out or cfg.paths.reports / "score"
    sets = evalsets.file_sets([Path(f) for f in files] or probe_files(cfg), cfg.root)
    with tempfile.TemporaryDirectory() as tmp:
        label, model, tok, spec = _model(cfg, Path(tmp), version, alias, base)
        answers = answer_sets(label, model, tok, spec, sets, cfg)
    training = training_answers(cfg)
    scores, model_metrics = summarize(sets, answers, None, cfg, training)
    metrics = {Candidate.MODEL: model_metrics}
    all_scores = {Candidate.MODEL: scores}
    rules = []
    intervals: dict[str, dict[str, float | int]] = {}
    if training is not None:
        (c_scores, c_metrics), _ = constant_baseline(sets, training, cfg)
        metrics = {Candidate.CONSTANT: c_metrics, **metrics}
        all_scores = {Candidate.CONSTANT: c_scores, **all_scores}
        intervals, rules = _over_constant(cfg, sets, scores, c_scores)
    else:
        log.warning("score: no training split, so no constant baseline to compare with")
    metrics = EvalMetrics(metrics)
    _write(cfg, out, label, sets, all_scores, metrics, intervals, rules)
    shown = json.dumps(metrics.as_dict()[Candidate.MODEL], ensure_ascii=False)
    log.info("score: %s: %s", label, shown[:400])
    return ScoreResult(label, metrics, intervals, out)
