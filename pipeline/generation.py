"""Batched greedy answers and answer-token loss: shared by evaluate, chat and the MLflow model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.modeling import ModelSpec, chat_messages, render_chat


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
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            cut = next((j for j, t in enumerate(row) if t in stops), None)
            body = row if cut is None else row[:cut]
            answers.append(
                Answer(
                    tok.decode(body, skip_special_tokens=True).strip(),
                    cut is not None,
                    len(body),
                    tok.decode(body),
                )
            )
    return answers


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
