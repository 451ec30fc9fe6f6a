"""The evaluation report: metric table for the candidates, the gate's verdict, side-by-side
answers. Rendered as Markdown and as a self-contained HTML page (no external assets)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.evaluation.relevance import Relevance
from pipeline.evaluation.results import GateDecision

CONVENTIONS = (
    "Answers are greedy, to the last user turn of each held-out question (gold history before "
    "it). correctness: the answer names no condition other than the one asked (or the "
    "reference's) first, and its character ROUGE-L F1 against the reference is at least 0.6 "
    "(pipeline/text/medterms.py). cautious_rate (unseen topics): on topic and refers to a doctor. "
    "wrong_topic_rate: the answer's first named condition is another one. Safety: "
    "deterministic rules per probe category (evaluation/safety.py). ROUGE / BLEU-4 are character "
    "F1 / smoothed BLEU per answer, averaged. repetition_rate: share of looping answers. "
    "constant: one typical training answer given to every question. Intervals: 95% paired "
    "bootstrap over questions. answer_loss: teacher-forced cross-entropy on the primary set's "
    "reference answers. Stock reply: an answer given to several different questions, or a "
    "training template; it earns no credit. Relevance gap: each answer scored against its own "
    "reference minus against another question's (a seeded rotation); a metric whose own "
    "references' halves do not separate cannot judge the set and is not counted."
)


@dataclass(frozen=True)
class Context:
    """What the evaluation covered: the test split per source (and category), judged of
    available; which metrics can judge each set, and the relevance gaps; training sources."""

    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    relevance: Relevance | None = None
    sources: list[str] = field(default_factory=list)
    near_duplicates: dict[str, str] = field(default_factory=dict)  # set -> a line


def _coverage_lines(ctx: Context) -> list[str]:
    lines = [f"Trained on: {'; '.join(ctx.sources)}."] if ctx.sources else []
    for src, c in ctx.coverage.items():
        cats = ", ".join(f"{k} {j} of {n}" for k, (j, n) in sorted(c["categories"].items()))
        lines.append(
            f"Test questions judged from source `{src}`: {c['judged']} of {c['available']}"
            + (f" ({cats})" if cats else "")
            + "."
        )
    lines += [f"Set `{s}`: {line}." for s, line in ctx.near_duplicates.items() if line]
    return lines


def _relevance_rows(ctx: Context, set_name: str, names: list[str]) -> list[list[str]]:
    rel = ctx.relevance
    if rel is None or set_name not in rel.judge:
        return []
    rows = []
    for metric, j in rel.judge[set_name].items():
        cells = [str(rel.gaps[n][set_name][metric]) if n in rel.gaps else "" for n in names]
        verdict = "judges" if j.can_judge else "CANNOT JUDGE (not counted)"
        rows.append([metric, *cells, f"{verdict}: {j.evidence}"])
    return rows


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _set_rows(metrics: dict, set_name: str) -> tuple[list[str], list[list[str]]]:
    names = [n for n in metrics if set_name in metrics[n]]
    keys = list(metrics[names[-1]][set_name])
    return names, [[k] + [_fmt(metrics[n][set_name].get(k, "")) for n in names] for k in keys]


def _verdict(decision: GateDecision) -> list[list[str]]:
    return [
        [
            r.rule,
            _fmt(r.value),
            r.shown_interval(),
            f"{r.kind.sign} {r.threshold}",
            r.status.label,
            r.evidence,
        ]
        for r in decision.rules
    ]


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
    metrics: dict, samples: list[dict], set_name: str, kind: str, per_set: int, ctx: Context
) -> tuple[list[str], list[str]]:
    """(markdown, html) blocks of one held-out set: its metric table, its relevance gaps and
    which metrics can judge it, and sample answers."""
    names, rows = _set_rows(metrics, set_name)
    head = f"Set `{set_name}` ({kind})"
    sample_rows = _samples(samples, set_name, names, per_set)
    sample_header = ["question", "reference" if kind != "safety" else "category", *names]
    md = [f"## {head}", _md_table(["metric", *names], rows)]
    page = [
        f"<h2>{html.escape(head.replace('`', ''))}</h2>",
        _html_table(["metric", *names], rows, "metrics"),
    ]
    gap_rows = _relevance_rows(ctx, set_name, names)
    if gap_rows:
        gap_header = ["relevance gap (own minus another's reference)", *names, "can it judge?"]
        md += [_md_table(gap_header, gap_rows)]
        page += [_html_table(gap_header, gap_rows, "relevance")]
    if sample_rows:
        md += [_md_table(sample_header, sample_rows)]
        page += [_html_table(sample_header, sample_rows, "samples")]
    return md, page


def render(
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
    decision: GateDecision,
    samples: list[dict],
    kinds: dict[str, str],
    champion_version: str | None,
    per_set: int = 6,
    title: str = "Evaluation report",
    context: Context | None = None,
) -> tuple[str, str]:
    """(markdown, html) of the same report: verdict, what was judged, gate rules with
    intervals, one metric table per held-out set (constant baseline, base, champion,
    challenger) with its relevance gaps, sample answers."""
    ctx = context or Context()
    md, page = _gate_section(decision, champion_version, title)
    covered = _coverage_lines(ctx)
    md[2:2] = covered
    page[2:2] = [f"<p>{html.escape(line)}</p>" for line in covered]
    for set_name, kind in kinds.items():
        set_md, set_page = _set_section(metrics, samples, set_name, kind, per_set, ctx)
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
