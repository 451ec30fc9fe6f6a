"""The evaluation report: metric table for the candidates, the gate's verdict, side-by-side
answers. Rendered as Markdown and as a self-contained HTML page (no external assets)."""

from __future__ import annotations

import html
from typing import Any

from pipeline.gate import GateDecision

CONVENTIONS = (
    "Answers are greedy, to the last user turn of each held-out question (gold history before "
    "it). correctness: the answer names no condition other than the one asked (or the "
    "reference's) first, and its character ROUGE-L F1 against the reference is at least 0.6 "
    "(pipeline/medterms.py). cautious_rate (unseen topics): on topic and refers to a doctor. "
    "wrong_topic_rate: the answer's first named condition is another one. Safety: "
    "deterministic rules per probe category (pipeline/safety.py). ROUGE / BLEU-4 are character "
    "F1 / smoothed BLEU per answer, averaged. repetition_rate: share of looping answers. "
    "constant: one typical training answer given to every question. Intervals: 95% paired "
    "bootstrap over questions. answer_loss: teacher-forced cross-entropy on the primary set's "
    "reference answers."
)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _set_rows(metrics: dict, set_name: str) -> tuple[list[str], list[list[str]]]:
    names = [n for n in metrics if set_name in metrics[n]]
    keys = list(metrics[names[-1]][set_name])
    return names, [[k] + [_fmt(metrics[n][set_name].get(k, "")) for n in names] for k in keys]


def _verdict(decision: GateDecision) -> list[list[str]]:
    sign = {"min": ">=", "max": "<="}
    label = {"pass": "pass", "fail": "FAIL", "insufficient": "FAIL (not enough evidence)"}
    rows = []
    for r in decision.rules:
        iv = r.interval
        shown = f"[{iv['low']:+.4f}, {iv['high']:+.4f}]" if iv else ""
        rows.append(
            [
                r.rule,
                _fmt(r.value),
                shown,
                f"{sign[r.kind]} {r.threshold}",
                label[r.status],
                r.evidence,
            ]
        )
    return rows


def _answer_cell(row: dict, name: str) -> str:
    a = row[name]
    marks = []
    if a.get("correct") is not None:
        marks.append("correct" if a["correct"] else "wrong")
    if a.get("safe") is not None:
        marks.append("safe" if a["safe"] else f"UNSAFE: {a['safety_reason']}")
    if a.get("topic") == "wrong_topic":
        marks.append("wrong topic")
    return a["answer"] + (f" [{'; '.join(marks)}]" if marks else "")


def _samples(samples: list[dict], set_name: str, names: list[str], k: int) -> list[list[str]]:
    rows = [s for s in samples if s["set"] == set_name][:k]
    return [
        [
            (f"（{s['context']}）… " if s.get("context") else "") + s["question"],
            s.get("reference") or s.get("category") or "",
            *(_answer_cell(s, n) for n in names),
        ]
        for s in rows
    ]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
    ".samples td{max-width:24em}.warn{color:#a40}"
)


def _gate_section(
    decision: GateDecision, champion_version: str | None, title: str
) -> tuple[list[str], list[str]]:
    """(markdown, html) blocks: title, verdict, the gate rules and any warnings."""
    verdict = (
        "PROMOTE to champion" if decision.promote else "REFUSED: " + ", ".join(decision.failed)
    )
    champion = f"champion: version {champion_version}" if champion_version else "no champion yet"
    gate_header = ["rule", "value", "95% interval", "threshold", "verdict", "evidence"]
    md = [
        f"# {title}",
        f"Gate verdict: **{verdict}** ({champion}).",
        "## Gate rules",
        _md_table(gate_header, _verdict(decision)),
    ]
    page = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p id="verdict">Gate verdict: <strong>{html.escape(verdict)}</strong> '
        f"({html.escape(champion)}).</p>",
        f"<h2>Gate rules</h2>{_html_table(gate_header, _verdict(decision), 'gate')}",
    ]
    if decision.warnings:
        md += ["**Warnings:** " + " ".join(decision.warnings)]
        page += [
            '<p class="warn"><strong>Warnings:</strong> '
            + html.escape(" ".join(decision.warnings))
            + "</p>"
        ]
    return md, page


def _set_section(
    metrics: dict, samples: list[dict], set_name: str, kind: str, per_set: int
) -> tuple[list[str], list[str]]:
    """(markdown, html) blocks of one held-out set: its metric table and sample answers."""
    names, rows = _set_rows(metrics, set_name)
    head = f"Set `{set_name}` ({kind})"
    sample_rows = _samples(samples, set_name, names, per_set)
    sample_header = ["question", "reference" if kind != "safety" else "category", *names]
    md = [f"## {head}", _md_table(["metric", *names], rows)]
    page = [
        f"<h2>{html.escape(head.replace('`', ''))}</h2>",
        _html_table(["metric", *names], rows, "metrics"),
    ]
    if sample_rows:
        md += [_md_table(sample_header, sample_rows)]
        page += [_html_table(sample_header, sample_rows, "samples")]
    return md, page


def render(
    metrics: dict[str, dict[str, dict[str, float]]],
    decision: GateDecision,
    samples: list[dict],
    kinds: dict[str, str],
    champion_version: str | None,
    per_set: int = 6,
    title: str = "Evaluation report",
) -> tuple[str, str]:
    """(markdown, html) of the same report: verdict, gate rules with intervals, one metric
    table per held-out set (constant baseline, base, champion, challenger), sample answers."""
    md, page = _gate_section(decision, champion_version, title)
    for set_name, kind in kinds.items():
        set_md, set_page = _set_section(metrics, samples, set_name, kind, per_set)
        md += set_md
        page += set_page
    md += ["## Conventions", CONVENTIONS]
    page += [f"<h2>Conventions</h2><p>{html.escape(CONVENTIONS)}</p>"]
    html_page = (
        '<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(page)
        + "</body></html>\n"
    )
    return "\n\n".join(md) + "\n", html_page
