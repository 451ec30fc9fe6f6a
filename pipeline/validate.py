"""Stage `validate`: check every conversation under data/raw/ before anything trains on it.

    python -m pipeline validate            # the stage: data/raw/*.jsonl -> data/validated/
    python -m pipeline validate FILE ...   # check any files; writes nothing; exit 0 when clean

Structure (valid JSON, a `conversations` list of {role, content} strings) is checked in plain
code, because a malformed line never reaches a table. The row-level rules run as a Great
Expectations suite over the flattened messages: known roles; user/assistant alternation after
an optional leading system message; conversations ending with the assistant; non-empty turns
within `validate.max_chars`; at most `validate.max_turns` messages; no duplicate conversation.
Any failure stops the pipeline with the offending conversations as file:line. The GX Data Docs
(HTML) and a JSON summary go to reports/validation/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config, ValidateConfig
from pipeline.errors import DataValidationError
from pipeline.io import write_json, write_jsonl

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
MAX_LISTED = 20


@dataclass
class Report:
    files: list[str]
    conversations: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # parsed conversations
    failures: dict[str, list[str]] = field(default_factory=dict)  # rule -> ["file:line ..."]

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        lines = [f"{len(self.files)} file(s), {self.conversations} conversation(s)"]
        for rule, where in self.failures.items():
            shown = ", ".join(where[:MAX_LISTED]) + (" ..." if len(where) > MAX_LISTED else "")
            lines.append(f"FAIL {rule}: {len(where)} conversation(s): {shown}")
        lines.append("all rules passed" if self.ok else f"{len(self.failures)} rule(s) failed")
        return "\n".join(lines)


def _structure_error(msg: Any) -> str | None:
    if not isinstance(msg, dict):
        return f"message is {type(msg).__name__}, expected an object with role and content"
    if set(msg) != {"role", "content"}:
        return f"message keys {sorted(msg)}, expected exactly ['content', 'role']"
    for key in ("role", "content"):
        if not isinstance(msg[key], str):
            return f"{key} is {type(msg[key]).__name__}, expected a string"
    return None


def parse(path: Path, report: Report) -> None:
    """Read one JSONL file into report.rows; structural problems go to report.failures."""
    shown = os.path.relpath(path)
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.conversations += 1
            where = f"{shown}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                report.failures.setdefault("valid_json", []).append(f"{where} ({exc.msg})")
                continue
            turns = obj.get("conversations") if isinstance(obj, dict) else None
            if not isinstance(turns, list) or set(obj) != {"conversations"}:
                report.failures.setdefault("structure", []).append(
                    f'{where} (expected {{"conversations": [...]}} and no other key)'
                )
                continue
            problem = next((p for p in map(_structure_error, turns) if p), None)
            if problem:
                report.failures.setdefault("structure", []).append(f"{where} ({problem})")
                continue
            key = hashlib.sha1(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()[:12]
            report.rows.append({"id": key, "source": shown, "line": lineno, "conversations": turns})


def _expected_role(pos: int, has_system: bool) -> str:
    if has_system:
        pos -= 1
    return "system" if pos < 0 else ("user" if pos % 2 == 0 else "assistant")


def flatten(rows: list[dict[str, Any]]):
    """One row per message, with the per-conversation facts the suite checks."""
    import pandas as pd

    records = []
    for conv, row in enumerate(rows):
        turns = row["conversations"]
        has_system = bool(turns) and turns[0]["role"] == "system"
        for pos, msg in enumerate(turns or [{"role": "", "content": ""}]):
            records.append(
                {
                    "conv": conv,
                    "role": msg["role"],
                    "expected_role": _expected_role(pos, has_system),
                    "chars": len(msg["content"].strip()),
                    "messages": len(turns),
                    "final_role": turns[-1]["role"] if turns else "",
                    "conversation_id": row["id"] if pos == 0 else None,  # GX skips nulls
                }
            )
    return pd.DataFrame.from_records(records)


def suite_rules(v: ValidateConfig) -> dict[str, Any]:
    """Rule name -> GX expectation (built lazily: GX takes seconds to import)."""
    import great_expectations.expectations as gxe

    return {
        "known_roles": gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        "alternation": gxe.ExpectColumnPairValuesToBeEqual(
            column_A="role", column_B="expected_role"
        ),
        "ends_with_assistant": gxe.ExpectColumnValuesToBeInSet(
            column="final_role", value_set=["assistant"]
        ),
        "non_empty_within_max_chars": gxe.ExpectColumnValuesToBeBetween(
            column="chars", min_value=1, max_value=v.max_chars
        ),
        "turn_count": gxe.ExpectColumnValuesToBeBetween(
            column="messages", min_value=2, max_value=v.max_turns
        ),
        "no_duplicate_conversation": gxe.ExpectColumnValuesToBeUnique(column="conversation_id"),
    }


def run_suite(rows: list[dict], v: ValidateConfig, docs_dir: Path | None) -> dict[str, list[str]]:
    """Run the GX suite; returns rule -> offending conversations as file:line."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    df = flatten(rows)
    ctx = gx.get_context(mode="ephemeral")
    batch = (
        ctx.data_sources.add_pandas("conversations")
        .add_dataframe_asset("messages")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="conversations"))
    rule_of = {suite.add_expectation(e).id: name for name, e in suite_rules(v).items()}
    actions = []
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
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["local"]))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name="conversations", data=batch, suite=suite)
    )
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="validate",
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df})
    failures: dict[str, list[str]] = {}
    for vr in result.run_results.values():
        for r in vr.results:
            if r.success:
                continue
            name = rule_of[r.expectation_config.id]
            convs = sorted(
                {int(df.loc[i, "conv"]) for i in r.result.get("unexpected_index_list", [])}
            )
            failures[name] = [f"{rows[c]['source']}:{rows[c]['line']}" for c in convs]
    return failures


def check(files: list[Path], v: ValidateConfig, docs_dir: Path | None = None) -> Report:
    report = Report([os.path.relpath(f) for f in files])
    for path in files:
        parse(path, report)
    if report.rows:
        report.failures.update(run_suite(report.rows, v, docs_dir))
    return report


def raw_files(cfg: Config) -> list[Path]:
    files = sorted(cfg.paths.raw.glob("*.jsonl"))
    if not files:
        raise DataValidationError(f"{cfg.paths.raw}: no *.jsonl files to train on")
    return files


def run(cfg: Config) -> Report:
    paths = cfg.paths
    report = check(raw_files(cfg), cfg.validate_, paths.reports / "validation")
    summary = {
        "files": report.files,
        "conversations": report.conversations,
        "passed": report.ok,
        "failures": report.failures,
    }
    write_json(paths.reports / "validation" / "summary.json", summary)
    if not report.ok:
        raise DataValidationError(
            "validation failed; nothing was written downstream\n" + report.text()
        )
    write_jsonl(paths.validated, report.rows)
    log.info("validate: %s", report.text().replace("\n", "; "))
    return report
