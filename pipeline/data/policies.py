"""What each validation rule's policy does with the conversations it names. `RULES` lists every
rule in report order (the structural ones `ingest` found, the GX suite's, the plain-code
detectors'); `apply` takes every rule's findings and applies `validate.policies`: `fail` and
`quarantine` move the conversation to the quarantine with every rule and reason it broke,
`redact` keeps it with typed placeholders in place of the personal data, `warn` only reports.
The `Outcome` holds what was found and kept, and the verdict (a fail rule fired, or more than
`validate.max_quarantine_fraction` quarantined). pipeline/data/validation_report.py renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import STRUCTURAL_RULES
from pipeline.data import checks
from pipeline.data.gxsuite import where
from pipeline.errors import PipelineError

RULES = (
    *STRUCTURAL_RULES,
    "known_roles",
    "alternation",
    "ends_with_assistant",
    "empty_turn",
    "max_chars",
    "turn_count",
    "too_long",
    "duplicate",
    "near_duplicate",
    *checks.DETECTORS,
)
Key = tuple[str, int]  # ("row", i) into the conversations, ("rejected", j) into the rejects
Found = dict[str, list[tuple[Key, str]]]  # rule -> [(conversation, reason)]


@dataclass
class Outcome:
    """What validation found and what each policy made of it."""

    files: list[str]
    policies: dict[str, str]
    max_fraction: float
    conversations_in: int = 0
    hits: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # rule -> (where, why)
    kept: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    redacted: int = 0
    tokens_how: str = ""

    @property
    def failed_rules(self) -> list[str]:
        return [r for r in self.hits if self.policies[r] == "fail"]

    @property
    def fraction(self) -> float:
        return len(self.quarantined) / self.conversations_in if self.conversations_in else 0.0

    @property
    def clean(self) -> bool:
        """No rule whose policy is fail or quarantine fired (warnings and redactions allowed)."""
        return not any(self.policies[r] in ("fail", "quarantine") for r in self.hits)

    @property
    def passed(self) -> bool:
        return not self.failed_rules and self.fraction <= self.max_fraction

    def verdict(self) -> str:
        if self.failed_rules:
            return f"FAILED: rule(s) with policy fail: {', '.join(self.failed_rules)}"
        if self.fraction > self.max_fraction:
            return (
                f"FAILED: {len(self.quarantined)} of {self.conversations_in} conversation(s) "
                f"quarantined ({self.fraction:.1%}), more than "
                f"validate.max_quarantine_fraction {self.max_fraction}"
            )
        return "passed" if self.clean else "passed with quarantine / warnings"


def apply(out: Outcome, rows: list[dict], rejected: list[dict], found: Found) -> Outcome:
    """Apply the policies to every rule's findings: `out` gets the hits, the kept (redacted)
    rows and the quarantine. Every conversation in is kept or quarantined, never both."""
    policies = out.policies
    out.conversations_in = len(rows) + len(rejected)
    records = {"row": rows, "rejected": rejected}
    violations: dict[Key, list[dict[str, str]]] = {}
    redact: dict[int, list[str]] = {}
    for rule in RULES:
        for key, why in found.get(rule, []):
            out.hits.setdefault(rule, []).append((where(records[key[0]][key[1]]), why))
            if policies[rule] in ("fail", "quarantine"):
                violations.setdefault(key, []).append({"rule": rule, "reason": why})
            elif policies[rule] == "redact":
                redact.setdefault(key[1], []).append(rule)
    out.redacted = len(redact)
    for i, row in enumerate(rows):
        if i in redact:
            row = {**row, "conversations": _redacted(row["conversations"], redact[i])}
        if ("row", i) in violations:
            out.quarantined.append(_quarantine(row, violations[("row", i)]))
        else:
            out.kept.append(row)
    for j, rec in enumerate(rejected):
        out.quarantined.append(_quarantine(rec, violations.get(("rejected", j), [])))
    if out.conversations_in != len(out.kept) + len(out.quarantined):
        raise PipelineError(
            f"validate: {out.conversations_in} conversations in, but {len(out.kept)} kept + "
            f"{len(out.quarantined)} quarantined"
        )
    return out


def _redacted(turns: list[dict[str, str]], rules: list[str]) -> list[dict[str, str]]:
    out = []
    for t in turns:
        text = t["content"]
        for rule in rules:
            text = checks.redact(text, rule)
        out.append({**t, "content": text})
    return out


def _quarantine(rec: dict[str, Any], violations: list[dict[str, str]]) -> dict[str, Any]:
    if not violations:  # a rejected record always has its own rule
        violations = [{"rule": rec["rule"], "reason": rec["reason"]}]
    body = {k: v for k, v in rec.items() if k not in ("rule", "reason")}
    return {
        "rule": violations[0]["rule"],
        "reason": violations[0]["reason"],
        "violations": violations,
        **body,
    }
