"""Stage `validate`: check every ingested conversation, apply each rule's policy, and write the
conversations that may train, the quarantine and the reports.

    python -m pipeline validate            # the stage: data/ingested/ -> data/validated/
    python -m pipeline validate FILE ...   # check any files, any format; writes nothing;
                                           # exit 0 when clean (no fail / quarantine hit)

Rules. Records `ingest` could not parse carry `malformed_json`, `schema` (missing or extra
keys) or `content_type` (a non-string content). The row-level rules run as one Great
Expectations suite over the flattened messages: `known_roles`; `alternation` (after an optional
leading system message, user and assistant alternate, starting with the user);
`ends_with_assistant`; `empty_turn`; `max_chars`; `turn_count`; `too_long` (over
`preprocess.max_seq_len` tokens: the number that would be truncated); `duplicate` (the same
turns as an earlier conversation) and `near_duplicate` (the same text once NFKC, case,
punctuation and whitespace are ignored); `mojibake`, `control_chars`, `pii_id_number`,
`pii_mobile`, `pii_email`. The last five and the duplicate keys are computed in plain code
(pipeline/data/checks.py: compiled regexes, an ID checksum) and handed to GX as columns, so every
rule shows in the GX Data Docs.

Policies (`validate.policies`): `fail` stops the stage; `quarantine` moves the conversation to
data/quarantine/conversations.jsonl with rule, reason and file:line; `redact` (personal data
only) keeps it with a typed placeholder ([身份证号], [手机号], [邮箱]) in place of the match;
`warn` only reports. Personal data itself never reaches a DVC output whatever the policy:
`ingest` already wrote the placeholders (and a masked note per hit, which these rules read), so
a quarantined or warned conversation holds the placeholders too. The stage fails when the
quarantined share exceeds `validate.max_quarantine_fraction`
(default 0.0: anything quarantined fails). Conversations in = kept + quarantined, checked.

Token lengths: the embedded tiny base's tokenizer does not exist yet when validate runs (it is
trained on the training split later), so lengths are estimated as characters /
`validate.chars_per_token` plus the ChatML scaffolding. The default 1.0 over-counts (the tiny
tokenizer makes 1.07 characters per token on unseen text, 1.66 on its own corpus; Qwen's about
1.4 on Chinese), so a `warn` errs on the side of reporting. A hub or local base whose tokenizer
is already on disk is used instead, with the same scaffolding allowance.

Outputs: data/validated/conversations.jsonl, data/quarantine/conversations.jsonl and
data/reports/validation/ (GX Data Docs index.html, summary.json, summary.md), also logged to an
MLflow run named `data-validation` in `register.experiment`.

Where the code lives: this module is the stage (`run`, `check_files`, token counting, the
MLflow run); pipeline/data/gxsuite.py flattens the conversations and runs the GX suite,
pipeline/data/policies.py applies the policies (the `Outcome`), pipeline/data/validation_report.py
writes summary.json and summary.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, SourceConfig
from pipeline.data import checks, gxsuite, policies, validation_report
from pipeline.data.policies import Outcome
from pipeline.errors import ConfigError, DataValidationError
from pipeline.io import atomic_dir, read_jsonl, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidateResult:
    """What the stage did with the ingested conversations: in = kept + quarantined."""

    conversations_in: int
    kept: int
    quarantined: int
    redacted_conversations: int  # kept with placeholders in place of personal data

    def __str__(self) -> str:
        return (
            f"validate: {self.conversations_in} checked, {self.kept} kept, "
            f"{self.quarantined} quarantined, {self.redacted_conversations} redacted"
        )


# --- token lengths ---------------------------------------------------------------------------


def token_counter(cfg: Config) -> tuple[Callable[[list[dict]], list[int]] | None, str]:
    """How to count tokens before the base exists (see the module doc): a counter using the
    base's tokenizer when it is on disk, or None for the characters-per-token estimate."""
    cpt = cfg.validate_.chars_per_token
    how = f"estimated at {cpt:g} characters per token"
    if cfg.uses_builtin_base:
        return None, how
    from pipeline.errors import ModelLoadError
    from pipeline.modeling import ModelSpec, load_tokenizer

    try:
        tok = load_tokenizer(ModelSpec.from_config(cfg), local_files_only=True)
    except ModelLoadError:
        log.info("validate: tokenizer of %s not on disk; token lengths %s", cfg.model.base, how)
        return None, how

    def count(rows: list[dict]) -> list[int]:
        texts = [t["content"] for r in rows for t in r["conversations"]]
        lengths = iter(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])
        return [
            sum(next(lengths) for _ in r["conversations"])
            + int(checks.estimate_tokens(0, len(r["conversations"]), True, cpt))
            for r in rows
        ]

    return count, f"{cfg.model.base} tokenizer + ChatML scaffolding"


# --- finding and judging ---------------------------------------------------------------------


def evaluate(
    rows: list[dict], rejected: list[dict], files: list[str], cfg: Config, docs_dir: Path | None
) -> Outcome:
    """Find every rule's hits (the records `ingest` could not parse, the GX suite over the
    rest) and apply the policies: kept (redacted) rows and the quarantine."""
    v = cfg.validate_
    out = Outcome(files, v.policies.as_dict(), v.max_quarantine_fraction)
    found: policies.Found = {}
    for j, rec in enumerate(rejected):
        found.setdefault(rec["rule"], []).append((("rejected", j), rec["reason"]))
    if rows:
        counter, out.tokens_how = token_counter(cfg)
        tokens = counter(rows) if counter else None
        suite = gxsuite.run_suite(rows, tokens, cfg, out.tokens_how, docs_dir)
        for rule, items in suite.items():
            found.setdefault(rule, []).extend((("row", i), why) for i, why in items)
    return policies.apply(out, rows, rejected, found)


# --- entry points ----------------------------------------------------------------------------


def check_files(files: list[Path], cfg: Config, source: SourceConfig) -> Outcome:
    """`validate FILE ...`: read any supported files as `ingest` would; nothing is written."""
    from pipeline.data import sources

    rows, rejected, shown = [], [], []
    for path in files:
        if source.format == "auto" and path.suffix.lower() in (".csv", ".tsv"):
            raise ConfigError(
                f"{path}: a table needs --format {path.suffix[1:].lower()} --question-columns "
                "A,B --answer-column C"
            )
        result = sources.read_file(path, source, os.path.relpath(path))
        rows += result.rows
        rejected += result.rejected
        shown.append(result.file)
    return evaluate(rows, rejected, shown, cfg, None)


def _log_to_mlflow(cfg: Config, outcome: Outcome, report_dir: Path) -> None:
    """A small `data-validation` run in the project's experiment: counts and the reports."""
    import mlflow
    from pipeline.registry import tracking

    tracking.setup(cfg)
    with mlflow.start_run(run_name="data-validation", tags={"pipeline.stage": "validate"}):
        mlflow.set_tag("passed", str(outcome.passed))
        mlflow.log_params({f"validate.policy.{r}": p for r, p in outcome.policies.items()})
        mlflow.log_metrics(
            {
                "data/conversations_in": outcome.conversations_in,
                "data/kept": len(outcome.kept),
                "data/quarantined": len(outcome.quarantined),
                "data/redacted": outcome.redacted,
            }
            | {f"data/rule/{r}": len(h) for r, h in outcome.hits.items()}
        )
        mlflow.log_artifacts(str(report_dir), artifact_path="validation")


def run(cfg: Config) -> ValidateResult:
    paths = cfg.paths
    if not paths.ingested.exists():
        raise DataValidationError(f"{paths.ingested}: not found; run `python -m pipeline ingest`")
    rows, rejected = read_jsonl(paths.ingested), read_jsonl(paths.rejected)
    files = sorted({r["file"] for r in rows + rejected})
    examples = cfg.validate_.examples
    with atomic_dir(paths.validation_reports) as tmp:
        outcome = evaluate(rows, rejected, files, cfg, tmp)
        validation_report.write(outcome, tmp, examples)
    write_jsonl(paths.quarantine, outcome.quarantined)
    _log_to_mlflow(cfg, outcome, paths.validation_reports)
    found = ", ".join(f"{r} {len(h)} ({outcome.policies[r]})" for r, h in outcome.hits.items())
    log.info(
        "validate: %d in, %d kept, %d quarantined, %d redacted; %s; %s",
        outcome.conversations_in,
        len(outcome.kept),
        len(outcome.quarantined),
        outcome.redacted,
        found or "no rule fired",
        outcome.verdict(),
    )
    if not outcome.passed:
        paths.validated.unlink(missing_ok=True)  # never leave an earlier run's data for split
        raise DataValidationError(
            "validation failed; nothing was written downstream "
            f"(quarantine: {os.path.relpath(paths.quarantine, cfg.root)})\n"
            + validation_report.text(outcome, examples)
        )
    write_jsonl(paths.validated, outcome.kept)
    return ValidateResult(
        conversations_in=outcome.conversations_in,
        kept=len(outcome.kept),
        quarantined=len(outcome.quarantined),
        redacted_conversations=outcome.redacted,
    )
