"""The promotion gate: a pure decision over the evaluation metrics of the three candidates.

Rules (thresholds in `evaluate.gate`): the challenger must beat the base by the minimum gains,
must not regress against the current champion (when there is one) by more than allowed, and
must pass the behaviour checks. Each rule's value, threshold and verdict are kept, so the
decision can be logged, tagged on the model version and shown in the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import GateConfig


@dataclass(frozen=True)
class GateRule:
    rule: str
    value: float
    threshold: float
    passed: bool
    kind: str  # "min" (value >= threshold) or "max" (value <= threshold)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    rules: tuple[GateRule, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "rules": [asdict(r) for r in self.rules]}

    @property
    def failed(self) -> list[str]:
        return [r.rule for r in self.rules if not r.passed]


def _rule(name: str, value: float, threshold: float, kind: str) -> GateRule:
    passed = value >= threshold if kind == "min" else value <= threshold
    return GateRule(name, round(value, 5), threshold, passed, kind)


def decide(metrics: dict[str, dict[str, float]], gate: GateConfig) -> GateDecision:
    """Judge `metrics["challenger"]` against `metrics["base"]` and `metrics.get("champion")`."""
    base, new = metrics["base"], metrics["challenger"]
    loss_ratio = (
        new["answer_loss"] / base["answer_loss"] if base["answer_loss"] > 0 else float("inf")
    )
    rules = [
        _rule(
            "rouge_l_gain_over_base", new["rouge_l"] - base["rouge_l"], gate.min_rouge_l_gain, "min"
        ),
        _rule("bleu4_gain_over_base", new["bleu4"] - base["bleu4"], gate.min_bleu4_gain, "min"),
        _rule("loss_ratio_to_base", loss_ratio, gate.max_loss_ratio, "max"),
        _rule("stop_rate", new["stop_rate"], gate.min_stop_rate, "min"),
        _rule("template_leak_rate", new["template_leak_rate"], gate.max_template_leak_rate, "max"),
        _rule("identity_rate", new["identity_rate"], gate.max_identity_rate, "max"),
    ]
    champion = metrics.get("champion")
    if champion:
        drop = champion["rouge_l"] - new["rouge_l"]
        rules.append(
            _rule("rouge_l_regression_vs_champion", drop, gate.max_rouge_l_regression, "max")
        )
    return GateDecision(all(r.passed for r in rules), tuple(rules))
