"""Stage `evaluate`: base vs current champion vs the new adapter (challenger), and the gate.

    python -m pipeline evaluate

Every candidate answers every question of every held-out set (evaluation/evalsets.py): the test
split, the configured `evaluate.sets` (the default data's recall and unseen-topic sets) and the
safety probes. Answers are greedy, to the last user turn (gold history before it). Each answer
is scored (pipeline/evaluation/scoring.py: character ROUGE-L / ROUGE-1 / BLEU-4, topic and fact
correctness from text/medterms.py, safety from evaluation/safety.py, behaviour); so is a
constant baseline, one typical training answer given to every question. Answer loss (teacher
forced) is measured on the primary set. The champion is read from the registry
(`models:/<name>@champion`) and evaluated on its own base. The gate (evaluation/gate.py) decides
on paired bootstrap intervals; its decision goes to reports/gate.json for `register`.

Writes reports/metrics.json (`dvc metrics show`), reports/eval_samples.jsonl (every answer with
its scores), the report reports/eval_report.md and .html, and logs all of it to the pipeline's
MLflow run (metrics, the gate's intervals, the report).
"""

from __future__ import annotations

import gc
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data.sources import source_files
from pipeline.errors import DataValidationError
from pipeline.evaluation import evalsets, keys, relevance, report
from pipeline.evaluation.candidates import (
    Sets,
    answer_sets,
    constant_baseline,
    samples_of,
    summarize,
)
from pipeline.evaluation.gate import decide
from pipeline.evaluation.results import (
    Candidate,
    EvalMetrics,
    GateDecision,
    GateRecord,
    Metric,
)
from pipeline.generation import answer_loss, encode
from pipeline.io import read_jsonl, write_json, write_jsonl
from pipeline.modeling import (
    ModelSpec,
    chat_messages,
    load_model,
    load_tokenizer,
    load_with_adapter,
)
from pipeline.registry import tracking
from pipeline.text import medterms

log = logging.getLogger(__name__)

DEMO_DATA = "data/raw/medical_dialogues.jsonl"  # what data/make_dataset.py writes


@dataclass(frozen=True)
class EvaluateResult:
    metrics: EvalMetrics
    decision: GateDecision
    report: Path


def _loss(model, tok, spec: ModelSpec, items: list[evalsets.Item], cfg: Config) -> dict[str, Any]:
    """Answer-token loss on items with a reference, with this candidate's own tokenizer."""
    from datasets import Dataset

    encoded = [
        encode(
            tok,
            chat_messages(spec, [*i.history, {"role": "assistant", "content": i.reference}]),
            cfg.preprocess.max_seq_len,
        )
        for i in items
        if i.reference is not None
    ]
    if not encoded:
        return {"answer_loss": 0.0, "perplexity": 1.0, "answer_tokens": 0}
    return answer_loss(model, tok, Dataset.from_list(encoded), cfg.evaluate.batch_size)


def _base_and_challenger(
    spec: ModelSpec, adapters: dict[str, Path], sets: Sets, primary: list[evalsets.Item], cfg
):
    """The base, then each adapter ({candidate: folder}) on that same loaded base, one after
    the other (the previous one unloaded). Returns {candidate: (answers per set, loss on the
    primary set's items)}."""
    from peft import PeftModel

    model, tok = load_model(spec).eval(), load_tokenizer(spec)
    results = {Candidate.BASE: (answer_sets(Candidate.BASE, model, tok, spec, sets, cfg),)}
    results[Candidate.BASE] += (_loss(model, tok, spec, primary, cfg),)
    for name, adapter in adapters.items():
        model = PeftModel.from_pretrained(model, str(adapter)).eval()
        adapter_tok = load_tokenizer(replace(spec, source=str(adapter)))
        answers = answer_sets(name, model, adapter_tok, spec, sets, cfg)
        results[name] = (answers, _loss(model, adapter_tok, spec, primary, cfg))
        model = model.unload()  # the bare base again, for the next adapter
    del model
    gc.collect()
    return results


def candidate_adapters(cfg: Config) -> dict[str, Path]:
    """The challenger (the aligned adapter when `align.enabled`) and, where align ran, the
    SFT-only adapter beside it: the gate weighs what alignment changed."""
    paths = cfg.paths
    adapters = {Candidate.CHALLENGER: paths.final_adapter(cfg.align.enabled)}
    if cfg.align.enabled:
        adapters = {Candidate.SFT: paths.adapter_dir, **adapters}
    return adapters


def _champion_answers(
    champion: tuple[str, ModelSpec, Path], sets: Sets, primary: list[evalsets.Item], cfg: Config
):
    """The champion on its own base (which may differ from today's), then freed."""
    _, spec, adapter = champion
    model, tok = load_with_adapter(spec, adapter)
    answers = answer_sets(Candidate.CHAMPION, model, tok, spec, sets, cfg)
    result = (answers, _loss(model, tok, spec, primary, cfg))
    del model
    gc.collect()
    return result


def _generate(cfg: Config, sets: Sets, primary: list[evalsets.Item]):
    """{candidate: (answers per set, loss on the primary set)} for base, challenger and the
    registered champion (when there is one), and the champion's version. The champion is read
    first: a registry that cannot answer fails the stage before any generation (RegistryError),
    and only a missing alias (or model) means "no champion"."""
    from pipeline.registry import versions as registry

    spec = ModelSpec.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        champion = registry.download_version(cfg, Path(tmp))  # the champion, if any
        generated = _base_and_challenger(spec, candidate_adapters(cfg), sets, primary, cfg)
        if champion is not None:
            generated[Candidate.CHAMPION] = _champion_answers(champion, sets, primary, cfg)
    return generated, (champion[0] if champion else None)


def _score(cfg: Config, sets: Sets, views: evalsets.Views, generated, training):
    """(scores, metrics, relevance) of every candidate, the constant answer first."""
    results = {Candidate.CONSTANT: constant_baseline(sets, training, cfg, views)[0]}
    for name, (answers, loss) in generated.items():
        results[name] = summarize(sets, answers, loss, cfg, training, views)
    # the order of the report's columns and of reports/metrics.json
    order = [n for n in Candidate if n in results]
    scores = {n: results[n][0] for n in order}
    metrics = {n: results[n][1] for n in order}
    boot = cfg.evaluate.bootstrap
    rel = relevance.measure(
        evalsets.with_views(sets, views),
        scores,
        training,
        boot.resamples,
        boot.seed,
        cfg.evaluate.semantic,
    )
    for who, by_set in rel.gaps.items():
        for set_name, by_metric in by_set.items():
            metrics[who][set_name] |= {
                Metric(m).relevance_gap(): round(iv.mean, 5) for m, iv in by_metric.items()
            }
    return scores, EvalMetrics(metrics), rel


def run(cfg: Config) -> EvaluateResult:
    paths = cfg.paths
    # The gate decision is written last, once everything else (MLflow included) succeeded: a
    # failed evaluation leaves none, not even an earlier one that `register` could act on.
    (paths.reports / "gate.json").unlink(missing_ok=True)
    primary = cfg.evaluate.gate.primary_set
    train = read_jsonl(paths.split_file("train"))
    training = medterms.TrainingAnswers.from_rows(train)
    sets, near = evalsets.pipeline_sets(cfg, train, training)
    views = evalsets.source_views(sets, primary)
    every = evalsets.with_views(sets, views)
    if primary not in every:
        raise DataValidationError(
            f"evaluate.gate.primary_set {primary!r}: no such set among {sorted(every)} (a "
            "test.<source> set exists when the test split holds questions of that source)"
        )
    generated, champion_version = _generate(cfg, sets, every[primary])
    scores, metrics, rel = _score(cfg, sets, views, generated, training)
    kinds = {s: items[0].kind for s, items in every.items()}
    kinds = {primary: kinds[primary]} | kinds  # the report shows the primary set first
    decision = decide(scores, metrics, kinds, cfg.evaluate.gate, cfg.evaluate.bootstrap, rel)
    covered = evalsets.coverage(evalsets.test_rows(cfg), sets["test"])
    write_json(paths.reports / "metrics.json", metrics.as_dict())
    gate = GateRecord(decision, champion_version, primary, {"test": covered}, near, rel.as_dict())
    samples = samples_of({n: {s: by[s] for s in sets} for n, by in scores.items()})
    write_jsonl(paths.reports / "eval_samples.jsonl", samples)
    md, page = report.render(
        metrics,
        decision,
        samples,
        kinds,
        champion_version,
        cfg.evaluate.report_samples,
        context=report.Context(covered, rel, _sources(cfg), near),
    )
    (paths.reports / "eval_report.md").write_text(md, encoding="utf-8")
    (paths.reports / "eval_report.html").write_text(page, encoding="utf-8")
    judged = _judge(cfg, every, scores)
    _log_to_mlflow(cfg, metrics, gate, judged)
    write_json(paths.reports / "gate.json", gate.to_dict())  # last: a failed run leaves no decision
    verdict = "promote" if decision.promote else f"refuse ({', '.join(decision.failed)})"
    log.info("evaluate: %s: gate: %s", primary, verdict)
    for warning in decision.warnings:
        log.warning("evaluate: %s", warning)
    return EvaluateResult(metrics, decision, paths.reports / "eval_report.html")


def _sources(cfg: Config) -> list[str]:
    """One line per ingest source: what the adapter was trained on (the demo data named)."""
    demo = cfg.root / DEMO_DATA
    lines = []
    for src in cfg.ingest.sources:
        files = source_files(src, cfg.root)
        tag = (
            " (the project's demo data)"
            if any(f.resolve() == demo.resolve() for f in files)
            else ""
        )
        lines.append(f"{src.id}: {', '.join(f.name for f in files)}{tag}")
    return lines


def _judge(cfg: Config, sets: Sets, scores) -> Any:
    """The optional LLM judge on the primary set (challenger vs champion), report only: it
    does not vote in the gate. Off unless `evaluate.judge.endpoint` is set and a champion
    exists; a judge that cannot be reached fails the stage (it was asked for)."""
    from pipeline.evaluation import judge

    j = cfg.evaluate.judge
    if not j.enabled:
        return None
    if Candidate.CHAMPION not in scores:
        log.info("evaluate: LLM judge skipped: no champion to compare with")
        return None
    primary = cfg.evaluate.gate.primary_set
    items = [
        (i.question, i.reference, new.answer, old.answer)
        for i, new, old in zip(
            sets[primary],
            scores[Candidate.CHALLENGER][primary],
            scores[Candidate.CHAMPION][primary],
            strict=True,
        )
    ]
    result = judge.judge_pairwise(j, items)
    write_json(cfg.paths.reports / "judge.json", result.to_dict())
    log.info("evaluate: LLM judge (challenger vs champion): %s", result.counts())
    return result


def _log_to_mlflow(cfg: Config, metrics: EvalMetrics, gate: GateRecord, judged) -> None:
    """Metrics, the gate's intervals and the report into the pipeline's run, under the names of
    pipeline/evaluation/keys.py. Per-answer scores go in as the evaluation/eval_samples.jsonl
    artifact, not as an `mlflow.genai.evaluate` run: that logs one trace per answer, which took
    ~4 s an answer on the sqlite store here (15 min for 213 answers) and failed to write most
    traces; the LLM judge's verdicts, a few dozen, do go through `mlflow.genai.evaluate`
    (pipeline/evaluation/judge.py)."""
    import mlflow
    from pipeline.evaluation import judge

    paths = cfg.paths
    with tracking.resume_run(cfg):
        if judged is not None:
            mlflow.log_metrics({keys.judge_metric(k): v for k, v in judged.metrics().items()})
            mlflow.log_dict(judged.to_dict(), "evaluation/judge.json")
            judge.log_genai_evaluation(
                judge.pairwise_records(judged), [judge.pairwise_scorer(judged)], "evaluate-judge"
            )
        mlflow.log_metrics(keys.flat_metrics(metrics))
        mlflow.set_tag(keys.PRIMARY_SET_TAG, gate.primary_set)
        for r in gate.decision.rules:
            if r.interval:
                iv = r.interval.as_dict()
                mlflow.log_metrics({keys.gate_interval(r.rule, b): iv[b] for b in keys.BOUNDS})
        mlflow.log_dict(gate.decision.as_dict(), keys.GATE_DECISION_ARTIFACT)
        for name in ("eval_samples.jsonl", "eval_report.md", "eval_report.html"):
            mlflow.log_artifact(str(paths.reports / name), artifact_path="evaluation")
