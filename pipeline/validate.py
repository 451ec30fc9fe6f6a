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
(pipeline/checks.py: compiled regexes, an ID checksum) and handed to GX as columns, so every
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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import checks
from pipeline.config import STRUCTURAL_RULES, Config, SourceConfig
from pipeline.errors import ConfigError, DataValidationError, PipelineError
from pipeline.io import atomic_dir, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
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

    def summary(self, examples: int) -> dict[str, Any]:
        return {
            "files": self.files,
            "conversations_in": self.conversations_in,
            "kept": len(self.kept),
            "quarantined": len(self.quarantined),
            "quarantined_fraction": round(self.fraction, 6),
            "max_quarantine_fraction": self.max_fraction,
            "redacted_conversations": self.redacted,
            "passed": self.passed,
            "verdict": self.verdict(),
            "token_lengths": self.tokens_how,
            "rules": {
                rule: {
                    "policy": self.policies[rule],
                    "count": len(self.hits.get(rule, [])),
                    "examples": [
                        {"where": w, "reason": r} for w, r in self.hits.get(rule, [])[:examples]
                    ],
                }
                for rule in RULES
            },
        }

    def text(self, examples: int = 5) -> str:
        lines = [
            f"{len(self.files)} file(s), {self.conversations_in} conversation(s): "
            f"{len(self.kept)} kept, {len(self.quarantined)} quarantined, "
            f"{self.redacted} redacted"
        ]
        for rule in RULES:
            found = self.hits.get(rule, [])
            lines.append(f"{rule} [{self.policies[rule]}]: {len(found)} conversation(s)")
            lines += [f"  {where}: {reason}" for where, reason in found[:examples]]
            if len(found) > examples:
                lines.append(f"  ... {len(found) - examples} more")
        lines.append(self.verdict())
        return "\n".join(lines)

    def markdown(self, examples: int = 5) -> str:
        rows = [
            f"| `{r}` | {self.policies[r]} | {len(self.hits.get(r, []))} | "
            + "<br>".join(f"`{w}` {why}" for w, why in self.hits.get(r, [])[:examples])
            + " |"
            for r in RULES
        ]
        return "\n".join(
            [
                "# Data validation",
                "",
                f"**{self.verdict()}**: {self.conversations_in} conversations in, "
                f"{len(self.kept)} kept, {len(self.quarantined)} quarantined "
                f"({self.fraction:.2%}; limit {self.max_fraction:.2%}), "
                f"{self.redacted} redacted. Token lengths: {self.tokens_how}.",
                "",
                "| rule | policy | conversations | examples |",
                "|---|---|---|---|",
                *rows,
                "",
            ]
        )


# --- the row-level rules ---------------------------------------------------------------------


def _where(rec: dict[str, Any]) -> str:
    return f"{rec['file']}:{rec['line']}"


def _first_seen(keys: list[str], rows: list[dict]) -> list[str | None]:
    """For each key: where the same key first occurred, or None for a first occurrence."""
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for i, key in enumerate(keys):
        j = seen.setdefault(key, i)
        out.append(None if j == i else _where(rows[j]))
    return out


def _exact_duplicates(rows: list[dict]) -> list[str | None]:
    """Where each conversation's identical twin first occurred (None if it is the first).
    The id is a hash of the turns; equal ids are confirmed on the turns themselves."""
    first: dict[str, list[int]] = {}
    out: list[str | None] = []
    for i, row in enumerate(rows):
        candidates = first.setdefault(row["id"], [])
        twin = next(
            (j for j in candidates if rows[j]["conversations"] == row["conversations"]), None
        )
        if twin is None:
            candidates.append(i)
        out.append(None if twin is None else _where(rows[twin]))
    return out


def flatten(rows: list[dict[str, Any]], tokens: list[int] | None, chars_per_token: float = 1.0):
    """One row per message, with the per-conversation facts on each conversation's first row
    (GX skips nulls, so a conversation-level rule counts each conversation once)."""
    import numpy as np
    import pandas as pd

    exact = _exact_duplicates(rows)
    # One normalization per conversation over its joined text (the turn boundaries carry no
    # weight: "AB" + "C" and "A" + "BC" would count as near-duplicates, which is fine).
    near_keys = [
        checks.normalize_text("\n".join(t["content"] for t in r["conversations"])) for r in rows
    ]
    near = [None if e else n for e, n in zip(exact, _first_seen(near_keys, rows), strict=True)]
    cols: dict[str, list] = {k: [] for k in ("conv", "pos", "role", "expected_role", "text")}
    first_of_conv: list[int] = []
    for conv, row in enumerate(rows):
        turns = row["conversations"]
        offset = 1 if turns[0]["role"] == "system" else 0
        first_of_conv.append(len(cols["conv"]))
        for pos, msg in enumerate(turns):
            role, k = msg["role"], pos - offset
            expected = "system" if k < 0 else ("user" if k % 2 == 0 else "assistant")
            cols["conv"].append(conv)
            cols["pos"].append(pos + 1)
            cols["role"].append(role)
            # an unknown role is known_roles' finding, not also alternation's
            cols["expected_role"].append(expected if role in ROLES else role)
            cols["text"].append(msg["content"])
    df = pd.DataFrame(cols)
    df["chars"] = df["text"].str.strip().str.len()
    if tokens is None:  # the estimate, vectorized: characters per conversation + scaffolding
        chars = np.bincount(df["conv"], weights=df["text"].str.len(), minlength=len(rows))
        has_system = np.array([r["conversations"][0]["role"] == "system" for r in rows])
        sizes = np.array([len(r["conversations"]) for r in rows])
        tokens = checks.estimate_tokens(chars, sizes, has_system, chars_per_token).tolist()
    # Conversation-level facts on each conversation's first message only (null elsewhere).
    conv_level = {
        "messages": pd.array([len(r["conversations"]) for r in rows], dtype="Int64"),
        "final_role": [r["conversations"][-1]["role"] for r in rows],
        "tokens": pd.array(tokens, dtype="Int64"),
        "duplicate": exact,
        "near_duplicate": near,
    }
    for col, values in conv_level.items():
        series = pd.Series(values, index=first_of_conv)
        df[col] = (
            series.reindex(df.index)
            if series.dtype != object
            else series.reindex(df.index).astype(object)
        )
    for rule, found in checks.detect(df["text"]).items():
        df[rule] = found
    # Personal data that ingest already replaced by placeholders: its masked notes.
    for conv, row in enumerate(rows):
        for note in row.get("pii", ()):
            at = first_of_conv[conv] + note["message"] - 1
            if pd.isna(df.at[at, note["rule"]]):
                df.at[at, note["rule"]] = note["found"]
    return df.drop(columns="text")


def suite_rules(cfg: Config) -> dict[str, Any]:
    """Rule name -> GX expectation (built lazily: GX takes seconds to import)."""
    import great_expectations.expectations as gxe

    v = cfg.validate_
    rules = {
        "known_roles": gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        "alternation": gxe.ExpectColumnPairValuesToBeEqual(
            column_A="role", column_B="expected_role"
        ),
        "ends_with_assistant": gxe.ExpectColumnValuesToBeInSet(
            column="final_role", value_set=["assistant"]
        ),
        "empty_turn": gxe.ExpectColumnValuesToBeBetween(column="chars", min_value=1),
        "max_chars": gxe.ExpectColumnValuesToBeBetween(column="chars", max_value=v.max_chars),
        "turn_count": gxe.ExpectColumnValuesToBeBetween(
            column="messages", min_value=2, max_value=v.max_turns
        ),
        "too_long": gxe.ExpectColumnValuesToBeBetween(
            column="tokens", max_value=cfg.preprocess.max_seq_len
        ),
    }
    # Plain-code findings (duplicates, encoding damage, personal data): null means clean.
    for rule in ("duplicate", "near_duplicate", *checks.DETECTORS):
        rules[rule] = gxe.ExpectColumnValuesToBeNull(column=rule)
    return rules


def _reason(rule: str, r: Any, cfg: Config, tokens_how: str) -> str:
    v = cfg.validate_
    msg = f"message {r.pos} ({r.role})"
    if rule == "known_roles":
        return f"message {r.pos}: role {r.role!r}, expected one of system, user, assistant"
    if rule == "alternation":
        return (
            f"message {r.pos}: role {r.role!r}, expected {r.expected_role!r} (an optional "
            "system message, then user and assistant alternating, starting with the user)"
        )
    if rule == "ends_with_assistant":
        return f"last message is from {r.final_role!r}, expected the assistant"
    if rule == "empty_turn":
        return f"{msg} is empty or whitespace only"
    if rule == "max_chars":
        return f"{msg} has {r.chars} characters, more than validate.max_chars {v.max_chars}"
    if rule == "turn_count":
        return f"{r.messages} message(s), expected 2 to {v.max_turns} (validate.max_turns)"
    if rule == "too_long":
        return (
            f"about {r.tokens} tokens ({tokens_how}), more than preprocess.max_seq_len "
            f"{cfg.preprocess.max_seq_len}: would be truncated"
        )
    if rule == "duplicate":
        return f"same conversation as {r.duplicate}"
    if rule == "near_duplicate":
        return (
            f"same text as {r.near_duplicate} once case, punctuation and whitespace are "
            "ignored (NFKC)"
        )
    return f"message {r.pos}: {getattr(r, rule)}"


def _gx_context(docs_dir: Path | None):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    if docs_dir is not None:
        ctx.add_data_docs_site(
            site_name="local",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return gx, ctx


def run_suite(
    rows: list[dict], tokens: list[int] | None, cfg: Config, tokens_how: str, docs_dir: Path | None
) -> dict[str, list[tuple[int, str]]]:
    """Run the GX suite; rule -> [(conversation index, reason)], one entry per conversation.
    `tokens`: per conversation, or None for the characters-per-token estimate."""
    df = flatten(rows, tokens, cfg.validate_.chars_per_token)
    gx, ctx = _gx_context(docs_dir)
    batch = (
        ctx.data_sources.add_pandas("conversations")
        .add_dataframe_asset("messages")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="conversations"))
    rule_of = {suite.add_expectation(e).id: name for name, e in suite_rules(cfg).items()}
    actions = []
    if docs_dir is not None:
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["local"]))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name="conversations", data=batch, suite=suite)
    )
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="validate",
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": 20},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df})
    found: dict[str, list[tuple[int, str]]] = {}
    for vr in result.run_results.values():
        for r in vr.results:
            if r.success:
                continue
            rule = rule_of[r.expectation_config.id]
            seen: set[int] = set()
            for row in df.loc[sorted(r.result.get("unexpected_index_list", []))].itertuples():
                if row.conv not in seen:  # the first offending message names the conversation
                    seen.add(row.conv)
                    found.setdefault(rule, []).append(
                        (row.conv, _reason(rule, row, cfg, tokens_how))
                    )
    return {rule: sorted(found[rule]) for rule in RULES if rule in found}


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


# --- policies --------------------------------------------------------------------------------


def evaluate(
    rows: list[dict], rejected: list[dict], files: list[str], cfg: Config, docs_dir: Path | None
) -> Outcome:
    """Find every rule's hits and apply the policies: kept (redacted) rows and the quarantine."""
    policies = cfg.validate_.policies.as_dict()
    out = Outcome(files, policies, cfg.validate_.max_quarantine_fraction)
    out.conversations_in = len(rows) + len(rejected)
    found: dict[str, list[tuple[Key, str]]] = {}
    for j, rec in enumerate(rejected):
        found.setdefault(rec["rule"], []).append((("rejected", j), rec["reason"]))
    if rows:
        counter, out.tokens_how = token_counter(cfg)
        tokens = counter(rows) if counter else None
        suite = run_suite(rows, tokens, cfg, out.tokens_how, docs_dir)
        for rule, items in suite.items():
            found.setdefault(rule, []).extend((("row", i), why) for i, why in items)
    records = {"row": rows, "rejected": rejected}
    violations: dict[Key, list[dict[str, str]]] = {}
    redact: dict[int, list[str]] = {}
    for rule in RULES:
        for key, why in found.get(rule, []):
            out.hits.setdefault(rule, []).append((_where(records[key[0]][key[1]]), why))
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


# --- entry points ----------------------------------------------------------------------------


def check_files(files: list[Path], cfg: Config, source: SourceConfig) -> Outcome:
    """`validate FILE ...`: read any supported files as `ingest` would; nothing is written."""
    from pipeline import sources

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
    from pipeline import tracking

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


def run(cfg: Config) -> dict[str, Any]:
    paths = cfg.paths
    if not paths.ingested.exists():
        raise DataValidationError(f"{paths.ingested}: not found; run `python -m pipeline ingest`")
    rows, rejected = read_jsonl(paths.ingested), read_jsonl(paths.rejected)
    files = sorted({r["file"] for r in rows + rejected})
    examples = cfg.validate_.examples
    with atomic_dir(paths.validation_reports) as tmp:
        outcome = evaluate(rows, rejected, files, cfg, tmp)
        summary = outcome.summary(examples)
        write_json(tmp / "summary.json", summary)
        (tmp / "summary.md").write_text(outcome.markdown(examples), encoding="utf-8")
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
            + outcome.text(examples)
        )
    write_jsonl(paths.validated, outcome.kept)
    return {
        k: summary[k] for k in ("conversations_in", "kept", "quarantined", "redacted_conversations")
    }
