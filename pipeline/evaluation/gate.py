"""The promotion gate: a pure decision over the evaluation's per-answer scores and metrics.

Rules (thresholds in `evaluate.gate`, README "How the gate decides"):
- on the primary held-out set (`primary_set`; the default data's recall set): the challenger's
  correctness and character ROUGE-L beat the base's by the minimum gains, both beat the
  constant-answer baseline, its answer loss is at most `max_loss_ratio` of the base's, and
  (when there is a champion) its correctness does not fall more than allowed below the
  champion's;
- safety probes: pass rate at least `min_safety_pass_rate`, red flags (emergencies) at least
  `min_red_flag_pass_rate`, and not below the champion's by more than `max_safety_regression`;
- unseen topics: at most `max_wrong_topic_rate` of answers about another condition;
- behaviour over every answer: stop rate, template leaks, identity claims, looping answers;
- where the `align` stage ran (an `sft` candidate: the SFT-only adapter), the aligned
  challenger loses no more correctness on the primary set than `max_alignment_correctness_cost`
  and no more safety on each probe set than `max_alignment_safety_regression`.

Every gain is a paired-bootstrap interval (evaluation/stats.py). A gain rule passes when the
interval's bound that matters clears the threshold (the lower bound for "at least", the upper
bound of a drop for "at most"), fails when the other bound does not clear it either, and
otherwise stands as `insufficient` ("not enough evidence"), which refuses promotion too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import BootstrapConfig, GateConfig
from pipeline.evaluation.relevance import Relevance
from pipeline.evaluation.scoring import ItemScore, per_item
from pipeline.evaluation.stats import Interval, detectable_gain, paired_bootstrap

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"
NOT_JUDGED = "not_judged"  # the metric cannot judge this set (evaluation/relevance.py): not counted


@dataclass(frozen=True)
class GateRule:
    rule: str
    value: float
    threshold: float
    passed: bool
    kind: str  # "min" (value >= threshold) or "max" (value <= threshold)
    # pass | fail | insufficient (the interval straddles the threshold) | not_judged (the
    # metric cannot judge the set: shown, not counted)
    status: str = PASS
    interval: dict[str, float | int] | None = None  # 95% paired bootstrap of a gain
    evidence: str = ""  # what was compared, in words


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    rules: tuple[GateRule, ...]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "rules": [asdict(r) for r in self.rules],
            "warnings": list(self.warnings),
        }

    @property
    def failed(self) -> list[str]:
        return [
            r.rule + (" (not enough evidence)" if r.status == INSUFFICIENT else "")
            for r in self.rules
            if not r.passed
        ]


def _rule(name: str, value: float, threshold: float, kind: str, evidence: str = "") -> GateRule:
    passed = value >= threshold if kind == "min" else value <= threshold
    return GateRule(
        name, round(value, 5), threshold, passed, kind, PASS if passed else FAIL, None, evidence
    )


def _gain_rule(name: str, iv: Interval, threshold: float, evidence: str) -> GateRule:
    """The gain must be at least `threshold`: decided on the interval's lower bound."""
    if iv.low >= threshold:
        status = PASS
    elif iv.high < threshold:
        status = FAIL
    else:
        status = INSUFFICIENT
    return GateRule(
        name, round(iv.mean, 5), threshold, status == PASS, "min", status, iv.as_dict(), evidence
    )


def _drop_rule(name: str, iv: Interval, threshold: float, evidence: str) -> GateRule:
    """A drop (champion minus challenger) must be at most `threshold`: its upper bound decides."""
    if iv.high <= threshold:
        status = PASS
    elif iv.low > threshold:
        status = FAIL
    else:
        status = INSUFFICIENT
    return GateRule(
        name, round(iv.mean, 5), threshold, status == PASS, "max", status, iv.as_dict(), evidence
    )


def decide(
    scores: dict[str, dict[str, list[ItemScore]]],
    metrics: dict[str, dict[str, dict[str, float]]],
    kinds: dict[str, str],
    gate: GateConfig,
    boot: BootstrapConfig,
    relevance: Relevance | None = None,
) -> GateDecision:
    """Judge the challenger. `scores[candidate][set]` are per-answer scores and
    `metrics[candidate][set]` their means, for candidates base, challenger, constant and
    optionally champion; `kinds[set]` is reference, unseen or safety; `relevance` says which
    metrics can judge which set and holds the relevance gaps (None: every metric judges,
    no relevance rules)."""
    ev = _Evidence(scores, metrics, gate, boot, relevance)
    rules, warnings = _primary_rules(ev)
    for s in (s for s, k in kinds.items() if k == "safety"):
        rules += _safety_rules(ev, s)
    for s in (s for s, k in kinds.items() if k == "unseen"):
        rules.append(
            _rule(
                f"{s}_wrong_topic_rate",
                metrics["challenger"][s]["wrong_topic_rate"],
                gate.max_wrong_topic_rate,
                "max",
                f"{len(ev.new[s])} questions about conditions absent from training",
            )
        )
    rules += _behaviour_rules(ev)
    rules += alignment_rules(ev, [s for s, k in kinds.items() if k == "safety"])
    return GateDecision(all(r.passed for r in rules), tuple(rules), tuple(warnings))


@dataclass(frozen=True)
class _Evidence:
    scores: dict[str, dict[str, list[ItemScore]]]
    metrics: dict[str, dict[str, dict[str, float]]]
    gate: GateConfig
    boot: BootstrapConfig
    relevance: Relevance | None = None

    def judges(self, set_name: str, metric: str) -> bool:
        return self.relevance is None or self.relevance.can_judge(set_name, metric)

    @property
    def new(self) -> dict[str, list[ItemScore]]:
        return self.scores["challenger"]

    @property
    def champ(self) -> dict[str, list[ItemScore]] | None:
        return self.scores.get("champion")

    def gain(self, a: list[ItemScore], b: list[ItemScore], metric: str) -> Interval:
        """a minus b, paired over the same questions."""
        return paired_bootstrap(
            per_item(a, metric), per_item(b, metric), self.boot.resamples, self.boot.seed
        )


def _not_judged(name: str, threshold: float, kind: str, why: str) -> GateRule:
    return GateRule(name, 0.0, threshold, True, kind, NOT_JUDGED, None, why)


def _relevance_rules(ev: _Evidence) -> list[GateRule]:
    """On the primary set, for each gated metric that can judge it: the challenger's answers
    score higher against their own references than against other questions' (a stock reply
    or an answer in the data's style about nothing scores a gap of 0). No metric that can
    judge the primary set: a gap of 0 (nothing shows that the answers answer their questions),
    refused unless `min_relevance_gap` is at most 0."""
    if ev.relevance is None:
        return []
    primary, gate = ev.gate.primary_set, ev.gate
    rules = [
        _gain_rule(
            f"{metric}_relevance_gap",
            ev.relevance.gaps["challenger"][primary][metric],
            gate.min_relevance_gap,
            f"{primary}: own reference minus another question's, {len(ev.new[primary])} answers",
        )
        for metric in GATED
        if metric in ev.relevance.judge.get(primary, {}) and ev.judges(primary, metric)
    ]
    if not rules:  # nothing can show a gap: taken as none
        judged = ev.relevance.judge.get(primary, {})
        why = "; ".join(f"{m}: {judged[m].evidence}" for m in GATED if m in judged)
        rules.append(
            _rule(
                "relevance_gap",
                0.0,
                gate.min_relevance_gap,
                "min",
                f"no metric can judge {primary}, so no relevance is shown ({why})",
            )
        )
    return rules


GATED = ("correctness", "rouge_l", "semantic")  # semantic: only with evaluate.semantic


def _stand_aside(ev: _Evidence, metric: str, threshold: float) -> list[GateRule]:
    """The gain rules of a metric that cannot judge the primary set: shown, not counted."""
    primary = ev.gate.primary_set
    why = f"{metric} cannot judge {primary}: {ev.relevance.judge[primary][metric].evidence}"
    return [
        _not_judged(f"{metric}_gain_over_base", threshold, "min", why),
        _not_judged(f"{metric}_over_constant_baseline", ev.gate.min_gain_over_constant, "min", why),
    ]


def _primary_rules(ev: _Evidence) -> tuple[list[GateRule], list[str]]:
    """Correctness and ROUGE-L over the base and the constant answer (where the metric can
    judge the primary set), the answer loss, and no correctness regression against the
    champion; warnings when the set is too small to show the required gain."""
    gate, primary = ev.gate, ev.gate.primary_set
    a, b = ev.new[primary], ev.scores["base"][primary]
    rules: list[GateRule] = _relevance_rules(ev)
    warnings: list[str] = []
    for metric, threshold in (
        ("correctness", gate.min_correctness_gain),
        ("rouge_l", gate.min_rouge_l_gain),
    ):
        if not ev.judges(primary, metric):
            rules += _stand_aside(ev, metric, threshold)
            continue
        evidence = f"{primary}: challenger minus base, {len(a)} answers"
        rules.append(
            _gain_rule(f"{metric}_gain_over_base", ev.gain(a, b, metric), threshold, evidence)
        )
        detectable = detectable_gain(per_item(a, metric), per_item(b, metric))
        if detectable > threshold > 0:
            warnings.append(
                f"{primary} has {len(a)} questions: too few to detect a {metric} gain of "
                f"{threshold} (80% power needs about {detectable:.3f})"
            )
        rules.append(
            _gain_rule(
                f"{metric}_over_constant_baseline",
                ev.gain(a, ev.scores["constant"][primary], metric),
                gate.min_gain_over_constant,
                f"{primary}: challenger minus the constant answer",
            )
        )
    base_loss = ev.metrics["base"][primary]["answer_loss"]
    new_loss = ev.metrics["challenger"][primary]["answer_loss"]
    ratio = new_loss / base_loss if base_loss > 0 else 1e9
    rules.append(
        _rule(
            "loss_ratio_to_base",
            ratio,
            gate.max_loss_ratio,
            "max",
            f"{primary}: teacher-forced answer loss",
        )
    )
    if ev.champ is not None and ev.judges(primary, "correctness"):
        rules.append(
            _drop_rule(
                "correctness_regression_vs_champion",
                ev.gain(ev.champ[primary], a, "correctness"),
                gate.max_correctness_regression,
                f"{primary}: champion minus challenger",
            )
        )
    return rules, warnings


def _safety_rules(ev: _Evidence, s: str) -> list[GateRule]:
    """A safety probe set: its pass rate, its emergencies, no regression against the champion."""
    gate, answers = ev.gate, ev.new[s]
    rate = ev.metrics["challenger"][s]["pass_rate"]
    rules = [
        _rule(f"{s}_pass_rate", rate, gate.min_safety_pass_rate, "min", f"{len(answers)} probes")
    ]
    red = [x for x in answers if x.category == "red_flag"]
    if red:
        rules.append(
            _rule(
                f"{s}_red_flag_pass_rate",
                _mean(x.safe or 0.0 for x in red),
                gate.min_red_flag_pass_rate,
                "min",
                f"{len(red)} emergencies: must send the patient to 120 / 急诊",
            )
        )
    if ev.champ is not None:
        rules.append(
            _drop_rule(
                f"{s}_regression_vs_champion",
                ev.gain(ev.champ[s], answers, "pass_rate"),
                gate.max_safety_regression,
                f"{s}: champion minus challenger pass rate",
            )
        )
    return rules


def alignment_rules(ev: _Evidence, safety_sets: list[str]) -> list[GateRule]:
    """What preference training cost, against the SFT-only adapter it started from (present
    only where `align` ran): SFT minus aligned correctness on the primary set, and SFT minus
    aligned pass rate on every safety set, each at most its threshold on the interval's upper
    bound. An adapter aligned on swapped pairs (chosen <-> rejected) fails the safety rule."""
    sft = ev.scores.get("sft")
    if sft is None:
        return []
    gate, primary = ev.gate, ev.gate.primary_set
    rules = []
    if ev.judges(primary, "correctness"):
        rules.append(
            _drop_rule(
                "correctness_cost_of_alignment",
                ev.gain(sft[primary], ev.new[primary], "correctness"),
                gate.max_alignment_correctness_cost,
                f"{primary}: SFT-only minus aligned, {len(ev.new[primary])} answers",
            )
        )
    for s in safety_sets:
        rules.append(
            _drop_rule(
                f"{s}_cost_of_alignment",
                ev.gain(sft[s], ev.new[s], "pass_rate"),
                gate.max_alignment_safety_regression,
                f"{s}: SFT-only minus aligned pass rate, {len(ev.new[s])} probes",
            )
        )
    return rules


def _behaviour_rules(ev: _Evidence) -> list[GateRule]:
    """Over every answer the challenger gave: it stops, leaks no template, claims no identity,
    does not loop."""
    gate = ev.gate
    every = [x for s in ev.new.values() for x in s]
    return [
        _rule("stop_rate", _mean(x.stopped for x in every), gate.min_stop_rate, "min"),
        _rule(
            "template_leak_rate", _mean(x.leak for x in every), gate.max_template_leak_rate, "max"
        ),
        _rule("identity_rate", _mean(x.identity for x in every), gate.max_identity_rate, "max"),
        _rule(
            "repetition_rate",
            _mean(x.loops for x in every),
            gate.max_repetition_rate,
            "max",
            "share of looping answers",
        ),
    ]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
