"""The row-level validation rules as one Great Expectations suite. `flatten` turns conversations
into one row per message, with each conversation's facts (message count, final role, token
length, where its exact or near duplicate first occurred) on its first row and the plain-code
findings of pipeline/data/checks.py (mojibake, control characters, personal data) as columns;
`suite_rules` builds the expectations from the config; `run_suite` runs them in an ephemeral GX
context (optionally building the Data Docs) and names, per rule, each offending conversation
with an exact reason. What happens to those conversations is pipeline/data/policies.py's concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.data import checks
from pipeline.environment import offline_env

ROLES = ("system", "user", "assistant")


def where(rec: dict[str, Any]) -> str:
    """A record's `file:line`, as every reason and report names it."""
    return f"{rec['file']}:{rec['line']}"


def _first_seen(keys: list[str], rows: list[dict]) -> list[str | None]:
    """For each key: where the same key first occurred, or None for a first occurrence."""
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for i, key in enumerate(keys):
        j = seen.setdefault(key, i)
        out.append(None if j == i else where(rows[j]))
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
        out.append(None if twin is None else where(rows[twin]))
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
    offline_env()  # GX would report usage otherwise
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
    """Run the GX suite; rule -> [(conversation index, reason)], one entry per conversation,
    in the suite's rule order. `tokens`: per conversation, or None for the characters-per-token
    estimate. `docs_dir`: where to build the Data Docs, or None for none."""
    df = flatten(rows, tokens, cfg.validate_.chars_per_token)
    rules = suite_rules(cfg)
    gx, ctx = _gx_context(docs_dir)
    batch = (
        ctx.data_sources.add_pandas("conversations")
        .add_dataframe_asset("messages")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="conversations"))
    rule_of = {suite.add_expectation(e).id: name for name, e in rules.items()}
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
    return {rule: sorted(found[rule]) for rule in rules if rule in found}
