"""What every candidate is scored with, shared by `evaluate` (the gate) and `score` (any model
on any file): one candidate's answers to every set, their scores and metrics, the constant
answer's, and the per-question sample rows of reports/eval_samples.jsonl."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import Config
from pipeline.evaluation import evalsets, scoring
from pipeline.evaluation.results import Metric, SetKind
from pipeline.generation import Answer, generate
from pipeline.io import read_jsonl
from pipeline.modeling import ModelSpec
from pipeline.text import medterms

log = logging.getLogger(__name__)

Sets = dict[str, list[evalsets.Item]]


def _all_items(sets: Sets) -> list[evalsets.Item]:
    return [item for items in sets.values() for item in items]


def answer_sets(
    name: str, model, tok, spec: ModelSpec, sets: Sets, cfg: Config
) -> dict[str, list[Answer]]:
    """One candidate's greedy answers to every set, generated in one batched pass."""
    log.info("evaluate: %s answers %d question(s)", name, sum(map(len, sets.values())))
    items = _all_items(sets)
    e = cfg.evaluate
    answers = generate(
        model, tok, spec, [i.history for i in items], e.max_new_tokens, e.batch_size, progress=True
    )
    out, k = {}, 0
    for set_name, set_items in sets.items():
        out[set_name] = answers[k : k + len(set_items)]
        k += len(set_items)
    return out


def summarize(
    sets: Sets,
    answers: dict[str, list[Answer]],
    loss: dict[str, Any] | None,
    cfg: Config,
    training: medterms.TrainingAnswers | None = None,
    views: evalsets.Views | None = None,
):
    """(per-set scores, per-set metrics) of one candidate's answers; `views` are sets made of
    some of those answers (`test.<source>`); the loss goes to the primary set. Stock replies
    (pipeline/evaluation/scoring.py) are found over every answer the candidate gave."""
    e = cfg.evaluate
    stock = scoring.find_stock(sets, answers, e.stock_reply_min_questions, training)
    scores = {s: scoring.score_items(sets[s], answers[s], training, stock) for s in sets}
    if e.semantic:
        for s in sets:
            if sets[s][0].kind == SetKind.REFERENCE:
                scores[s] = scoring.with_semantic(scores[s])
    for view, (parent, idx) in (views or {}).items():
        scores[view] = [scores[parent][k] for k in idx]
    kinds = {s: items[0].kind for s, items in evalsets.with_views(sets, views or {}).items()}
    metrics = {s: scoring.set_metrics(kinds[s], scores[s], e.semantic) for s in scores}
    if loss is not None:
        primary = e.gate.primary_set
        metrics[primary] |= {
            Metric.ANSWER_LOSS: round(loss["answer_loss"], 5),
            Metric.PERPLEXITY: round(loss["perplexity"], 4),
        }
    return scores, metrics


def training_answers(cfg: Config) -> medterms.TrainingAnswers | None:
    path = cfg.paths.split_file("train")
    return medterms.TrainingAnswers.from_rows(read_jsonl(path)) if path.is_file() else None


def constant_baseline(
    sets: Sets,
    training: medterms.TrainingAnswers,
    cfg: Config,
    views: evalsets.Views | None = None,
):
    """Scores of the constant answer (evaluation/scoring.py) on every set, and the answer."""
    text = scoring.constant_answer(list(training.texts))
    answers = {s: scoring.constant_answers(text, len(items)) for s, items in sets.items()}
    return summarize(sets, answers, None, cfg, training, views), text


def samples_of(scores: dict[str, dict[str, list[scoring.ItemScore]]]) -> list[dict]:
    """One row per question: the question, reference and every candidate's scored answer."""
    names = list(scores)
    rows = []
    for set_name, items in next(iter(scores.values())).items():
        for k, item in enumerate(items):
            row = {
                "set": set_name,
                "id": item.id,
                "question": item.question,
                "context": item.context,
                "reference": item.reference,
                "category": item.category,
            }
            for n in names:
                s = scores[n][set_name][k]
                row[n] = {
                    "answer": s.answer,
                    "topic": s.topic,
                    "correct": s.correct,
                    "cautious": s.cautious,
                    "rouge_l": s.rouge_l,
                    "safe": s.safe,
                    "safety_reason": s.safety_reason,
                    "loops": s.loops,
                }
            rows.append(row)
    return rows
