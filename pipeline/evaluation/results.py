"""Typed evaluation results: who was evaluated, the metrics of each set, the gate's rules and
decision, and reports/gate.json, with their (de)serialization in one place.

    from pipeline.evaluation.results import GateRule, RuleKind
    GateRule.check("stop_rate", 0.97, 0.9, RuleKind.MIN, "every answer")   # value vs threshold
    GateRule.gain("rouge_l_gain_over_base", interval, 0.03, "recall: challenger minus base")
    GateRule.drop("safety_regression_vs_champion", interval, 0.0, "champion minus challenger")

The enums are `StrEnum`s: they compare equal to, and serialize as, the strings reports/gate.json
and reports/metrics.json have always held ("min", "pass", "challenger", "reference"...), so the
files on disk keep their shape. MLflow key names live in pipeline/evaluation/keys.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.errors import DataValidationError
from pipeline.evaluation.stats import Interval

SAFETY_SET = "safety"  # the set of `evaluate.safety_probes`


class Candidate(StrEnum):
    """Who answered: the constant answer, the base, the registered champion, the SFT-only
    adapter (where align ran), the new adapter (challenger); `score` scores one `model`."""

    CONSTANT = "constant"
    BASE = "base"
    CHAMPION = "champion"
    SFT = "sft"  # the SFT-only adapter beside an aligned challenger (align.enabled)
    CHALLENGER = "challenger"
    MODEL = "model"


class SetKind(StrEnum):
    REFERENCE = "reference"  # the last assistant turn is the right answer
    UNSEEN = "unseen"  # a topic absent from training: cautious, on topic, see a doctor
    SAFETY = "safety"  # probes judged by evaluation/safety.py's rules


class Metric(StrEnum):
    """The metric names of a set (pipeline/evaluation/scoring.py `set_metrics`, the loss, the
    relevance gaps as `<metric>_relevance_gap`); safety sets add one pass rate per category."""

    N = "n"
    CORRECTNESS = "correctness"
    ROUGE_L = "rouge_l"
    ROUGE1 = "rouge1"
    BLEU4 = "bleu4"
    SEMANTIC = "semantic"
    CAUTIOUS_RATE = "cautious_rate"
    WRONG_TOPIC_RATE = "wrong_topic_rate"
    PASS_RATE = "pass_rate"
    OVER_TRIAGE_RATE = "over_triage_rate"
    STOP_RATE = "stop_rate"
    TEMPLATE_LEAK_RATE = "template_leak_rate"
    IDENTITY_RATE = "identity_rate"
    REPETITION_RATE = "repetition_rate"
    STOCK_REPLY_RATE = "stock_reply_rate"
    ANSWER_CHARS_P50 = "answer_chars_p50"
    ANSWER_LOSS = "answer_loss"
    PERPLEXITY = "perplexity"

    def relevance_gap(self) -> str:
        return f"{self.value}_relevance_gap"


class RuleKind(StrEnum):
    MIN = "min"  # the value must be at least the threshold
    MAX = "max"  # the value must be at most the threshold

    def holds(self, value: float, threshold: float) -> bool:
        return value >= threshold if self is RuleKind.MIN else value <= threshold

    @property
    def sign(self) -> str:
        return ">=" if self is RuleKind.MIN else "<="


class RuleStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient"  # the interval straddles the threshold: refuses promotion
    NOT_JUDGED = "not_judged"  # the metric cannot judge the set (relevance.py): shown, not counted

    @property
    def passed(self) -> bool:
        return self in (RuleStatus.PASS, RuleStatus.NOT_JUDGED)

    @property
    def label(self) -> str:
        """How the report shows it."""
        return {
            RuleStatus.PASS: "pass",
            RuleStatus.FAIL: "FAIL",
            RuleStatus.INSUFFICIENT: "FAIL (not enough evidence)",
            RuleStatus.NOT_JUDGED: "not counted",
        }[self]


def _interval_from(data: Mapping[str, Any] | None) -> Interval | None:
    if data is None:
        return None
    return Interval(
        float(data["mean"]),
        float(data["low"]),
        float(data["high"]),
        int(data["n"]),
        int(data["resamples"]),
    )


def _rounded(iv: Interval) -> Interval:
    """As reports/gate.json holds it (5 decimals): decided on the exact bounds, kept rounded."""
    return Interval(**iv.as_dict())


@dataclass(frozen=True)
class GateRule:
    """One rule of the gate. `passed` follows from `status`; the constructors below decide the
    status, so a new rule is one call: `check` (a value against a threshold), `gain` (an
    interval's lower bound must clear it), `drop` (an interval's upper bound must stay under
    it) or `not_judged` (shown, not counted)."""

    rule: str
    value: float
    threshold: float
    kind: RuleKind
    status: RuleStatus
    interval: Interval | None = None  # 95% paired bootstrap of a gain
    evidence: str = ""  # what was compared, in words

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RuleKind(self.kind))
        object.__setattr__(self, "status", RuleStatus(self.status))

    @property
    def passed(self) -> bool:
        return self.status.passed

    @classmethod
    def check(
        cls, name: str, value: float, threshold: float, kind: RuleKind, evidence: str = ""
    ) -> GateRule:
        kind = RuleKind(kind)
        status = RuleStatus.PASS if kind.holds(value, threshold) else RuleStatus.FAIL
        return cls(name, round(value, 5), threshold, kind, status, None, evidence)

    @classmethod
    def gain(cls, name: str, iv: Interval, threshold: float, evidence: str = "") -> GateRule:
        """The gain must be at least `threshold`: decided on the interval's lower bound."""
        if iv.low >= threshold:
            status = RuleStatus.PASS
        elif iv.high < threshold:
            status = RuleStatus.FAIL
        else:
            status = RuleStatus.INSUFFICIENT
        return cls(name, round(iv.mean, 5), threshold, RuleKind.MIN, status, _rounded(iv), evidence)

    @classmethod
    def drop(cls, name: str, iv: Interval, threshold: float, evidence: str = "") -> GateRule:
        """A drop (e.g. champion minus challenger) must be at most `threshold`: its upper bound
        decides."""
        if iv.high <= threshold:
            status = RuleStatus.PASS
        elif iv.low > threshold:
            status = RuleStatus.FAIL
        else:
            status = RuleStatus.INSUFFICIENT
        return cls(name, round(iv.mean, 5), threshold, RuleKind.MAX, status, _rounded(iv), evidence)

    @classmethod
    def not_judged(cls, name: str, threshold: float, kind: RuleKind, why: str) -> GateRule:
        return cls(name, 0.0, threshold, RuleKind(kind), RuleStatus.NOT_JUDGED, None, why)

    def shown_interval(self) -> str:
        iv = self.interval
        return f"[{iv.low:+.4f}, {iv.high:+.4f}]" if iv else ""

    def tag(self) -> str:
        """The rule as a registry version tag: value, 95% interval, verdict, threshold."""
        iv = self.interval.as_dict() if self.interval else None
        shown = f" [{iv['low']}, {iv['high']}]" if iv else ""
        status = (
            "fail: not enough evidence" if self.status is RuleStatus.INSUFFICIENT else self.status
        )
        return f"{self.value}{shown} ({status}; {self.kind.sign} {self.threshold})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "kind": str(self.kind),
            "status": str(self.status),
            "interval": self.interval.as_dict() if self.interval else None,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateRule:
        status = data.get("status") or ("pass" if data["passed"] else "fail")
        return cls(
            data["rule"],
            float(data["value"]),
            float(data["threshold"]),
            RuleKind(data["kind"]),
            RuleStatus(status),
            _interval_from(data.get("interval")),
            data.get("evidence", ""),
        )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    rules: tuple[GateRule, ...]
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, rules: list[GateRule] | tuple[GateRule, ...], warnings=()) -> GateDecision:
        """Promote only when every rule passed."""
        return cls(all(r.passed for r in rules), tuple(rules), tuple(warnings))

    @property
    def failed(self) -> list[str]:
        return [
            r.rule + (" (not enough evidence)" if r.status is RuleStatus.INSUFFICIENT else "")
            for r in self.rules
            if not r.passed
        ]

    def rule(self, name: str) -> GateRule:
        for r in self.rules:
            if r.rule == name:
                return r
        raise KeyError(f"no gate rule {name!r} among {[r.rule for r in self.rules]}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "rules": [r.to_dict() for r in self.rules],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        return cls(
            bool(data["promote"]),
            tuple(GateRule.from_dict(r) for r in data["rules"]),
            tuple(data.get("warnings", ())),
        )


@dataclass(frozen=True)
class GateRecord:
    """reports/gate.json: the decision, what it was decided against, and what it covered."""

    decision: GateDecision
    champion_version: str | None
    primary_set: str
    coverage: Mapping[str, Any] = field(default_factory=dict)
    near_duplicates: Mapping[str, str] = field(default_factory=dict)
    relevance: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.decision.as_dict(),
            "champion_version": self.champion_version,
            "primary_set": self.primary_set,
            "coverage": dict(self.coverage),
            "near_duplicates": dict(self.near_duplicates),
            "relevance": dict(self.relevance),
        }

    @classmethod
    def read(cls, path: Path) -> GateRecord:
        """reports/gate.json as `evaluate` wrote it; a file of another shape is a
        DataValidationError naming the file and what is missing."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                GateDecision.from_dict(data),
                data.get("champion_version"),
                data["primary_set"],
                data.get("coverage", {}),
                data.get("near_duplicates", {}),
                data.get("relevance", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(
                f"{path}: not a gate decision as `python -m pipeline evaluate` writes it "
                f"({type(exc).__name__}: {exc}); expected promote, rules (rule, value, "
                "threshold, kind, status, interval) and primary_set: run evaluate again"
            ) from None


def _frozen(tree: Mapping[str, Mapping[str, Mapping[str, float]]]):
    return MappingProxyType(
        {
            str(who): MappingProxyType(
                {
                    str(s): MappingProxyType({str(k): v for k, v in m.items()})
                    for s, m in sets.items()
                }
            )
            for who, sets in tree.items()
        }
    )


class EvalMetrics(Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Every candidate's metrics per set (`metrics[candidate][set][metric]`), read-only. Reads
    as the nested mapping reports/metrics.json holds; `value` is the typed read."""

    __slots__ = ("_tree",)

    def __init__(self, tree: Mapping[str, Mapping[str, Mapping[str, float]]]):
        self._tree = _frozen(tree)

    def __getitem__(self, candidate: str) -> Mapping[str, Mapping[str, float]]:
        return self._tree[candidate]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree)

    def __len__(self) -> int:
        return len(self._tree)

    def __repr__(self) -> str:
        return f"EvalMetrics({self.as_dict()!r})"

    def __reduce__(self):  # mapping proxies do not pickle; flows hand stage results on
        return (EvalMetrics, (self.as_dict(),))

    def value(self, candidate: Candidate, set_name: str, metric: Metric | str) -> float | None:
        return self._tree.get(candidate, {}).get(set_name, {}).get(metric)

    def as_dict(self) -> dict[str, dict[str, dict[str, float]]]:
        """The shape of reports/metrics.json."""
        return {w: {s: dict(m) for s, m in sets.items()} for w, sets in self._tree.items()}
