"""Prompts and answers, one path for every entry point: the prompt (`prompt`: chat template,
thinking off, system prompt), a conversation's ids with answer-only labels (`encode`, used by
preprocess for training and by evaluate for the answer loss), batched greedy answers cut at
the stop tokens and decoded (`generate`: evaluate, chat, the registered model; serve renders
with `prompt` and ends its answers with `finish` too), and the answer-token loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.errors import DataValidationError
from pipeline.modeling import ModelSpec, chat_messages, render_chat

IGNORE = -100


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


def token_labels(tok, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
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
    ids, labels = token_labels(tok, text, spans)
    return {
        "input_ids": ids[:max_len],
        "labels": labels[:max_len],
        "length": min(len(ids), max_len),
        "truncated": len(ids) > max_len,
        "answer_tokens": sum(x != IGNORE for x in labels[:max_len]),
    }


@dataclass(frozen=True)
class Answer:
    text: str
    stopped: bool  # an end token came within the token budget
    new_tokens: int
    raw: str = ""  # decoded with special tokens kept (template leaks show here)


def stop_ids(tok) -> list[int]:
    """<|im_end|> and <|endoftext|> (and the tokenizer's eos), as Qwen's generation config."""
    names = ["<|im_end|>", "<|endoftext|>", tok.eos_token]
    vocab = tok.get_vocab()
    return sorted({vocab[n] for n in names if n in vocab})


def prompt(tok, spec: ModelSpec, history: list[dict[str, str]]) -> str:
    """The one prompt every entry point sends (evaluate, chat, the registered model, serve):
    the configured system prompt, the model's own chat template, thinking off, the assistant
    turn opened."""
    return render_chat(tok, chat_messages(spec, history), add_generation_prompt=True)


def generate(
    model,
    tok,
    spec: ModelSpec,
    histories: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 16,
    progress: bool = False,
) -> list[Answer]:
    """Greedy answers to each history (ending with a user turn), left-padded in batches."""
    import torch
    from tqdm.auto import tqdm

    tok.padding_side = "left"
    stops = stop_ids(tok)
    prompts = [prompt(tok, spec, h) for h in histories]
    answers: list[Answer] = []
    device = next(model.parameters()).device
    starts = range(0, len(prompts), batch_size)
    for i in tqdm(starts, desc="generate", unit="batch", disable=not progress):
        enc = tok(
            prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tok.pad_token_id,
            )
        answers += [finish(tok, row, stops) for row in out[:, enc["input_ids"].shape[1] :].tolist()]
    return answers


def finish(tok, row: list[int], stops: list[int]) -> Answer:
    """The answer in generated token ids (prompt excluded): cut at the first stop token, decoded
    without special tokens and stripped (`raw`: decoded with them, for template leaks). Every
    entry point's answer text comes from here (generate; serve's engine)."""
    cut = next((j for j, t in enumerate(row) if t in stops), None)
    body = row if cut is None else row[:cut]
    text = tok.decode(body, skip_special_tokens=True).strip()
    return Answer(text, cut is not None, len(body), tok.decode(body))


def answer_loss(model, tok, dataset, batch_size: int = 16) -> dict[str, Any]:
    """Mean cross-entropy per supervised (answer) token over a preprocessed dataset."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(dataset), batch_size):
        rows = dataset[i : i + batch_size]
        width = max(len(x) for x in rows["input_ids"])
        ids = torch.full((len(rows["input_ids"]), width), tok.pad_token_id)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        for j, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"], strict=True)):
            ids[j, : len(x)], labels[j, : len(y)], mask[j, : len(x)] = (
                torch.tensor(x),
                torch.tensor(y),
                1,
            )
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:].to(device)
        total += torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        ).item()
        count += int((shift_labels != -100).sum())
    loss = total / max(count, 1)
    return {"answer_loss": loss, "perplexity": math.exp(min(loss, 50)), "answer_tokens": count}
