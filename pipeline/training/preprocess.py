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

from pipeline import SPLITS
from pipeline.config import Config
from pipeline.generation import (  # noqa: F401 - encode and its parts are preprocess's API too
    IGNORE,
    answer_spans,
    encode,
    token_labels,
)
from pipeline.io import atomic_dir, read_jsonl, write_json
from pipeline.modeling import ModelSpec, chat_messages, load_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessResult:
    directory: Path
    stats: dict[str, Any]


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
