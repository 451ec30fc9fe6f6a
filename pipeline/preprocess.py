"""Stage `preprocess`: render conversations with the tokenizer's own chat template and label
only the assistant's answers.

    python -m pipeline preprocess

Labels are -100 everywhere except the tokens of each assistant turn's content and its closing
`<|im_end|>` (so the model learns to stop). Spans are found with the template itself (see
`answer_spans`), without `{% generation %}` markers, for Qwen2 / Qwen2.5 / Qwen3 templates,
the embedded tiny model's and the ChatML given to the original Qwen-7B-Chat. Qwen3 renders with
thinking off; its empty think block is prompt, never a label. Conversations longer than
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
from pipeline.modeling import ModelSpec, chat_messages, load_tokenizer, render_chat
from pipeline.split import SPLITS

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class PreprocessResult:
    directory: Path
    stats: dict[str, Any]


END_OF_TURN = "<|im_end|>"
# A private-use character: stands in for one answer to find where the template puts it.
MARK = "\ue000"


def answer_spans(tok, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans (content + <|im_end|>) of its
    assistant turns.

    The text is the template's rendering of the whole conversation, as is. Each answer is found
    by rendering the conversation again with that answer replaced by a marker: the text before
    the marker must be the same, and the answer must follow it verbatim with <|im_end|>. This
    holds for templates that are not prefix-stable too (Qwen3 renders earlier answers without
    a think block and the last one with an empty `<think>\n\n</think>\n\n`, which stays in
    the unsupervised prompt part).
    """
    text = render_chat(tok, messages)
    if MARK in text:
        raise DataValidationError(f"conversation contains the reserved character {MARK!r}")
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        marked = render_chat(tok, [*messages[:i], {**msg, "content": MARK}, *messages[i + 1 :]])
        start = marked.find(MARK)
        end = start + len(msg["content"]) + len(END_OF_TURN)
        if (
            start < 0
            or marked[:start] != text[:start]
            or text[start:end] != msg["content"] + END_OF_TURN
        ):
            raise DataValidationError(
                f"the chat template does not render assistant turn {i} verbatim followed by "
                f"{END_OF_TURN}; answer-only labels need a ChatML (Qwen) template"
            )
        spans.append((start, end))
    return text, spans


def _token_labels(tok, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Token ids of `text` and their labels: the id inside an answer span, IGNORE elsewhere.

    Fast tokenizers label by character offsets over one encoding of the whole text; slow ones
    (the original Qwen-7B-Chat's tiktoken tokenizer) encode the pieces between span
    boundaries separately, which only matters where a token would straddle a boundary.
    """
    if tok.is_fast:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        labels = [
            tid if any(s <= a and b <= e for s, e in spans) else IGNORE
            for tid, (a, b) in zip(ids, enc["offset_mapping"], strict=True)
        ]
        return ids, labels
    ids, labels, cursor = [], [], 0
    for s, e in [*spans, (len(text), len(text))]:
        for piece, supervised in ((text[cursor:s], False), (text[s:e], True)):
            piece_ids = tok(piece, add_special_tokens=False)["input_ids"] if piece else []
            ids += piece_ids
            labels += piece_ids if supervised else [IGNORE] * len(piece_ids)
        cursor = e
    return ids, labels


def encode(tok, messages: list[dict[str, str]], max_len: int) -> dict[str, Any]:
    """input_ids, labels (answers only) and truncation facts for one conversation."""
    text, spans = answer_spans(tok, messages)
    ids, labels = _token_labels(tok, text, spans)
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
