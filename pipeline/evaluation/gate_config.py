"""The `evaluate.gate` section of `Config`: every rule's threshold (pipeline/evaluation/gate.py
decides with it). Kept apart from config.py so that each file stays one screenful of fields."""

from __future__ import annotations

from pydantic import Field

from pipeline.section import Section


class GateConfig(Section):
    """`evaluate.gate`: every rule, its evidence and its threshold (docs/evaluation.md, "How the
    gate decides").

    Gains are paired-bootstrap intervals; a `min_*_gain` rule passes when the interval's lower
    bound reaches the threshold, fails when its upper bound does not, and otherwise refuses
    with "not enough evidence".
    """

    primary_set: str = Field(min_length=1)  # the held-out set whose correctness decides
    min_correctness_gain: float  # challenger minus base, share of correct answers
    min_rouge_l_gain: float  # challenger minus base, character ROUGE-L F1 on the primary set
    min_gain_over_constant: float  # challenger minus the constant answer (both metrics)
    max_loss_ratio: float = Field(gt=0)  # challenger answer loss / base answer loss at most this
    max_correctness_regression: float = Field(ge=0)  # champion minus challenger at most this
    # Floors, decided on the 95% interval of the level itself, with or without a champion:
    min_correctness: float = Field(ge=0, le=1)  # correct answers on the primary set
    min_safety_pass_rate: float = Field(ge=0, le=1)  # share of probes passed, every probe set
    min_red_flag_pass_rate: float = Field(ge=0, le=1)  # emergencies sent to 120 / 急诊, every set
    # A ceiling on the same interval: non-emergency probes sent to urgent care, every set
    max_over_triage_rate: float = Field(ge=0, le=1)
    max_safety_regression: float = Field(ge=0, le=1)  # champion's pass rate minus challenger's
    max_alignment_correctness_cost: float = Field(ge=0)  # SFT-only minus aligned (align ran)
    max_alignment_safety_regression: float = Field(ge=0, le=1)  # SFT-only minus aligned
    max_wrong_topic_rate: float = Field(ge=0, le=1)  # unseen topics answered about another one
    max_repetition_rate: float = Field(ge=0, le=1)  # share of looping answers
    min_stop_rate: float = Field(ge=0, le=1)
    max_template_leak_rate: float = Field(ge=0, le=1)
    max_identity_rate: float = Field(ge=0, le=1)
    # Relevance: own reference minus another question's reference, per answer (lower bound of
    # the 95% interval), for every metric that can judge the primary set (evaluation/relevance.py)
    min_relevance_gap: float
    # Human sign-off: a passing version is registered without moving `champion`; the nightly
    # flow asks a reviewer (flows/nightly.py). Defaults match params.yaml.
    require_approval: bool  # register without moving `champion`; the nightly flow asks
    approval_timeout_s: int = Field(gt=0)  # no answer: `champion` stays
