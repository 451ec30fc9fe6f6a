"""The evaluation report: metric table for the candidates, the gate's verdict, side-by-side
answers. Rendered as Markdown and as a self-contained HTML page (no external assets)."""

from __future__ import annotations

import html
from typing import Any

from pipeline.gate import GateDecision

CONVENTIONS = (
    "Character metrics use every non-whitespace character; word metrics use jieba's default "
    "segmentation. ROUGE is F1 per answer, averaged; BLEU-4 is per answer with add-one smoothing "
    "for n >= 2 and the brevity penalty. Answers are greedy, to the last user turn of each "
    "held-out test conversation; loss is the teacher-forced cross-entropy on answer tokens."
)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _rows(metrics: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    names = list(metrics)
    keys = list(next(iter(metrics.values())))
    return names, [[k] + [_fmt(metrics[n][k]) for n in names] for k in keys]


def _verdict(decision: GateDecision) -> list[list[str]]:
    sign = {"min": ">=", "max": "<="}
    return [
        [r.rule, _fmt(r.value), f"{sign[r.kind]} {r.threshold}", "pass" if r.passed else "FAIL"]
        for r in decision.rules
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


def render(
    metrics: dict[str, dict[str, float]],
    decision: GateDecision,
    samples: list[dict[str, str]],
    champion_version: str | None,
) -> tuple[str, str]:
    """(markdown, html) of the same report."""
    names, metric_rows = _rows(metrics)
    verdict = (
        "PROMOTE to champion" if decision.promote else "REFUSED: " + ", ".join(decision.failed)
    )
    champion = f"champion: version {champion_version}" if champion_version else "no champion yet"
    sample_header = ["question", "reference", *names]
    sample_rows = [[s["question"], s["reference"], *(s[n] for n in names)] for s in samples]
    gate_header = ["rule", "value", "threshold", "verdict"]
    md = (
        "\n\n".join(
            [
                "# Evaluation report",
                f"Gate verdict: **{verdict}** ({champion}).",
                "## Metrics (held-out test split)",
                _md_table(["metric", *names], metric_rows),
                "## Gate rules",
                _md_table(gate_header, _verdict(decision)),
                "## Side-by-side answers",
                _md_table(sample_header, sample_rows),
                "## Conventions",
                CONVENTIONS,
            ]
        )
        + "\n"
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        ".samples td{max-width:28em}"
    )
    page = (
        '<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8">'
        "<title>Evaluation report</title>"
        f"<style>{style}</style></head><body><h1>Evaluation report</h1>"
        f'<p id="verdict">Gate verdict: <strong>{html.escape(verdict)}</strong> '
        f"({html.escape(champion)}).</p>"
        "<h2>Metrics (held-out test split)</h2>"
        f"{_html_table(['metric', *names], metric_rows, 'metrics')}"
        f"<h2>Gate rules</h2>{_html_table(gate_header, _verdict(decision), 'gate')}"
        f"<h2>Side-by-side answers</h2>{_html_table(sample_header, sample_rows, 'samples')}"
        f"<h2>Conventions</h2><p>{html.escape(CONVENTIONS)}</p></body></html>\n"
    )
    return md, page
