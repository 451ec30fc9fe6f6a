"""The validation reports of an `Outcome` (pipeline/data/policies.py): `summary` (the dict written
as summary.json: counts, verdict, and per rule its policy, count and first examples),
`markdown` (summary.md, the table a person reads and the flows attach to their runs) and `text`
(what `python -m pipeline validate FILE ...` prints and a failed stage's error carries).
`write` puts summary.json and summary.md next to the GX Data Docs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.data.policies import RULES, Outcome
from pipeline.io import write_json


def summary(out: Outcome, examples: int) -> dict[str, Any]:
    return {
        "files": out.files,
        "conversations_in": out.conversations_in,
        "kept": len(out.kept),
        "quarantined": len(out.quarantined),
        "quarantined_fraction": round(out.fraction, 6),
        "max_quarantine_fraction": out.max_fraction,
        "redacted_conversations": out.redacted,
        "passed": out.passed,
        "verdict": out.verdict(),
        "token_lengths": out.tokens_how,
        "rules": {
            rule: {
                "policy": out.policies[rule],
                "count": len(out.hits.get(rule, [])),
                "examples": [
                    {"where": w, "reason": r} for w, r in out.hits.get(rule, [])[:examples]
                ],
            }
            for rule in RULES
        },
    }


def text(out: Outcome, examples: int = 5) -> str:
    lines = [
        f"{len(out.files)} file(s), {out.conversations_in} conversation(s): "
        f"{len(out.kept)} kept, {len(out.quarantined)} quarantined, "
        f"{out.redacted} redacted"
    ]
    for rule in RULES:
        found = out.hits.get(rule, [])
        lines.append(f"{rule} [{out.policies[rule]}]: {len(found)} conversation(s)")
        lines += [f"  {where}: {reason}" for where, reason in found[:examples]]
        if len(found) > examples:
            lines.append(f"  ... {len(found) - examples} more")
    lines.append(out.verdict())
    return "\n".join(lines)


def markdown(out: Outcome, examples: int = 5) -> str:
    rows = [
        f"| `{r}` | {out.policies[r]} | {len(out.hits.get(r, []))} | "
        + "<br>".join(f"`{w}` {why}" for w, why in out.hits.get(r, [])[:examples])
        + " |"
        for r in RULES
    ]
    return "\n".join(
        [
            "# Data validation",
            "",
            f"**{out.verdict()}**: {out.conversations_in} conversations in, "
            f"{len(out.kept)} kept, {len(out.quarantined)} quarantined "
            f"({out.fraction:.2%}; limit {out.max_fraction:.2%}), "
            f"{out.redacted} redacted. Token lengths: {out.tokens_how}.",
            "",
            "| rule | policy | conversations | examples |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def write(out: Outcome, report_dir: Path, examples: int) -> None:
    """summary.json and summary.md into `report_dir`."""
    write_json(report_dir / "summary.json", summary(out, examples))
    (report_dir / "summary.md").write_text(markdown(out, examples), encoding="utf-8")
