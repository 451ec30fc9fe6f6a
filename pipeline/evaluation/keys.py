"""The MLflow names of the evaluation: metric keys, run tags and registry version tags.

Built here and only here: `evaluate` logs through `metric` / `flat_metrics`, `register` tags
versions through `gate_tag_key`, and `registry list` reads them back through `metric` and
`summary`. A name written one way and read another (`registry list` once read
`eval/challenger/rouge_l` while evaluate wrote `eval/challenger/<set>/rouge_l`) cannot happen
while both sides call this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.evaluation.results import SAFETY_SET, Candidate, Metric

PRIMARY_SET_TAG = "eval.primary_set"  # run tag: the set the gate decided on
GATE_PROMOTE_TAG = "gate.promote"  # version and run tag: "True" / "False"
# version tag: the champion the gate compared the version against ("none": there was none)
GATE_CHAMPION_TAG = "gate.champion_version"
GATE_DECISION_ARTIFACT = "gate_decision.json"
BOUNDS = ("low", "high", "mean")


def metric(candidate: Candidate | str, set_name: str, name: Metric | str) -> str:
    """`eval/<candidate>/<set>/<metric>`: one metric of one candidate on one set."""
    return f"eval/{candidate}/{set_name}/{name}"


def flat_metrics(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """Every candidate's metrics as MLflow metric keys."""
    return {
        metric(who, s, k): float(v)
        for who, sets in metrics.items()
        for s, m in sets.items()
        for k, v in m.items()
    }


def gate_interval(rule: str, bound: str) -> str:
    """`gate/<rule>/<low|high|mean>`: a bound of a gate rule's 95% interval."""
    if bound not in BOUNDS:
        raise ValueError(f"interval bound {bound!r}: expected one of {BOUNDS}")
    return f"gate/{rule}/{bound}"


def gate_tag_key(rule: str) -> str:
    """`gate.<rule>`: a rule's verdict as a registry version tag."""
    return f"gate.{rule}"


def champion_tag(version: str | None) -> str:
    """The value of GATE_CHAMPION_TAG for a gate decided against `version` (None: none)."""
    return "none" if version is None else str(version)


def champion_from_tag(value: str) -> str | None:
    """GATE_CHAMPION_TAG's value read back: the version, None where there was no champion."""
    return None if value == "none" else value


def judge_metric(name: str) -> str:
    return f"judge/{name}"


@dataclass(frozen=True)
class Summary:
    """What `registry list` shows of a version: the challenger's numbers on the set its gate
    decided on, and its safety probes' pass rate (None where the run holds none)."""

    primary_set: str
    correctness: float | None
    rouge_l: float | None
    safety: float | None


def summary(metrics: Mapping[str, float], tags: Mapping[str, str], default_primary: str) -> Summary:
    """A version's run metrics and tags read back through the names `evaluate` logged with;
    `default_primary` is used for runs logged before the primary set was tagged."""
    primary = tags.get(PRIMARY_SET_TAG, default_primary)
    me = Candidate.CHALLENGER
    return Summary(
        primary,
        metrics.get(metric(me, primary, Metric.CORRECTNESS)),
        metrics.get(metric(me, primary, Metric.ROUGE_L)),
        metrics.get(metric(me, SAFETY_SET, Metric.PASS_RATE)),
    )
