"""Stage `preprocess`: render conversations with the tokenizer's own chat template and label
only the assistant's answers.

    python -m pipeline preprocess

Labels are -100 everywhere except the tokens of each assistant turn's content and its closing
`<|im_end|>` (so the model learns to stop). Spans are found by rendering the conversation's
prefixes with the template itself, so this works for any prefix-stable chat template (Qwen2,
Qwen2.5, the embedded tiny model) without `{% generation %}` markers. Conversations longer than
`preprocess.max_seq_len` tokens are truncated and counted; one left with no answer token is
dropped and listed by id in reports/preprocess.json, never silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.errors import DataValidationError
from pipeline.io import atomic_dir, read_jsonl, write_json
from pipeline.modeling import ModelSpec, chat_messages, load_tokenizer
from pipeline.split import SPLITS

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class PreprocessResult:
    directory: Path
    stats: dict[str, Any]


def answer_spans(tok, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans (content + end marker) of assistant turns."""
    text = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tok.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (upto.startswith(prompt) and text.startswith(upto)):
            raise DataValidationError(
                "the chat template does not render conversations prefix by prefix; "
                "answer-only labels need a prefix-stable template (e.g. Qwen2.5's)"
            )
        spans.append((len(prompt), len(upto.rstrip())))  # drop the newline after <|im_end|>
    return text, spans


def encode(tok, messages: list[dict[str, str]], max_len: int) -> dict[str, Any]:
    """input_ids, labels (answers only) and truncation facts for one conversation."""
    text, spans = answer_spans(tok, messages)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [
        tid if any(s <= a and b <= e for s, e in spans) else IGNORE
        for tid, (a, b) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {
        "input_ids": ids[:max_len],
        "labels": labels[:max_len],
        "length": min(len(ids), max_len),
        "truncated": len(ids) > max_len,
        "answer_tokens": sum(x != IGNORE for x in labels[:max_len]),
    }


def _encode_split(tok, spec: ModelSpec, rows: list[dict], max_len: int):
    from datasets import Dataset

    ds = Dataset.from_list([{"id": r["id"], "conversations": r["conversations"]} for r in rows])
    return ds.map(
        lambda row: encode(tok, chat_messages(spec, row["conversations"]), max_len),
        remove_columns=["conversations"],
        desc="tokenize",
    )


def run(cfg: Config) -> PreprocessResult:
    paths = cfg.paths
    spec = ModelSpec.from_config(cfg)
    tok = load_tokenizer(spec)
    max_len = cfg.preprocess.max_seq_len
    stats: dict[str, Any] = {"max_seq_len": max_len}
    with atomic_dir(paths.processed_dir) as tmp:
        for name in SPLITS:
            rows = read_jsonl(paths.split_file(name))
            ds = _encode_split(tok, spec, rows, max_len)
            empty = [i for i, n in zip(ds["id"], ds["answer_tokens"], strict=True) if n == 0]
            kept = ds.filter(lambda r: r["answer_tokens"] > 0)
            kept.save_to_disk(str(tmp / name))
            stats[name] = {
                "conversations": len(ds),
                "truncated": sum(ds["truncated"]),
                "dropped_no_answer_after_truncation": empty,
                "tokens": sum(kept["length"]),
                "answer_tokens": sum(kept["answer_tokens"]),
            }
            if stats[name]["truncated"]:
                log.warning(
                    "preprocess: %d of %d %s conversations truncated to %d tokens",
                    stats[name]["truncated"],
                    len(ds),
                    name,
                    max_len,
                )
    write_json(paths.reports / "preprocess.json", stats)
    log.info("preprocess: %s", {k: v for k, v in stats.items() if k != "max_seq_len"})
    return PreprocessResult(paths.processed_dir, stats)
