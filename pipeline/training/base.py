"""Stage `base`: build the embedded offline base model, or record the external one.

    python -m pipeline base

With `model.base: tiny-qwen` it trains a byte-level BPE tokenizer with Qwen's ChatML special
tokens and Qwen2.5-Instruct's chat template, then a small `Qwen2ForCausalLM` pretrained as a
plain language model on the training split's text, so that LoRA has a language model to adapt.
It stands in for a real pretrained Qwen; only the training split is used so evaluation on the
test split stays held out. With a hub id or local directory it writes only a reference file.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, TinyModelConfig
from pipeline.io import atomic_dir, read_jsonl, write_json
from pipeline.progress import WarmupEstimate
from pipeline.training.tiny import build_tokenizer, new_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseResult:
    path: Path
    built: bool
    vocab_size: int = 0
    parameters: int = 0
    final_loss: float = float("nan")
    seconds: float = 0.0
    steps: int = 0  # pretraining steps (after the tiny.max_tokens budget)
    epochs: float = 0.0


def _corpus(rows: list[dict]) -> list[str]:
    """Plain-text documents: the turns of each conversation, one per line."""
    return ["\n".join(t["content"] for t in row["conversations"]) for row in rows]


def _chat_warmup(tok, rows: list[dict], count: int) -> list[str]:
    """Generic ChatML exercises ("repeat this sentence") rendered by the model's own template.

    A real instruct model knows its chat scaffolding (system prompt, role tokens, stopping at
    <|im_end|>) before anyone fine-tunes it; these teach the tiny base the same, and nothing of
    the medical question-to-answer task, which stays for the LoRA stage to learn.
    """
    docs = []
    for row in rows[:count]:
        sentence = row["conversations"][-1]["content"].split("。")[0][:24]
        chat = [
            {"role": "user", "content": f"请复述：{sentence}"},
            {"role": "assistant", "content": sentence},
        ]
        docs.append(tok.apply_chat_template(chat, tokenize=False))
    return docs


def _packed_blocks(docs: list[list[int]], eot: int, block: int, gen):
    """Documents in a fresh random order, joined by <|endoftext|> and cut into equal blocks.

    Re-packing every epoch matters: with a fixed packing the model can memorize each answer
    from whatever document happens to precede it instead of from its own question.
    """
    import torch

    ids: list[int] = []
    for i in torch.randperm(len(docs), generator=gen).tolist():
        ids += docs[i] + [eot]
    n = len(ids) // block
    return torch.tensor(ids[: n * block]).view(n, block)


@dataclass(frozen=True)
class PretrainPlan:
    """How much pretraining a corpus gets: `tiny.epochs` of it, unless `tiny.max_tokens` caps
    the tokens (epochs x tokens per epoch) first."""

    tokens_per_epoch: int  # documents plus one <|endoftext|> each
    steps_per_epoch: int
    steps: int  # what will run
    uncapped_steps: int  # what `tiny.epochs` alone would run

    @property
    def capped(self) -> bool:
        return self.steps < self.uncapped_steps

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch


def plan_pretraining(docs: list[list[int]], t: TinyModelConfig) -> PretrainPlan:
    """The pretraining steps for `docs` (token ids) under `t`'s epochs and token budget."""
    tokens = sum(map(len, docs)) + len(docs)
    per_epoch = max(1, math.ceil(tokens // t.block_size / t.batch_size))
    budget = max(1, t.max_tokens // (t.block_size * t.batch_size))
    uncapped = t.epochs * per_epoch
    return PretrainPlan(tokens, per_epoch, min(uncapped, budget), uncapped)


def _announce(plan: PretrainPlan, t: TinyModelConfig, parameters: int) -> None:
    """Say before the first step how much pretraining is planned, and plainly when the corpus
    is larger than the embedded base was sized for."""
    step_tokens = t.block_size * t.batch_size
    log.info(
        "base: pretraining tiny-qwen for %s steps: %.3g epochs of %s steps (%s tokens an epoch, "
        "batches of %d x %d tokens)",
        f"{plan.steps:,}",
        plan.epochs,
        f"{plan.steps_per_epoch:,}",
        f"{plan.tokens_per_epoch:,}",
        t.batch_size,
        t.block_size,
    )
    if plan.capped:
        log.warning(
            "base: this corpus is far larger than the embedded tiny base (%.2f M parameters) "
            "is sized for: tiny.epochs=%d would be %s steps (%s tokens), %.1fx tiny.max_tokens="
            "%s; pretraining stops at that budget (%.2f epochs). tiny-qwen will not learn a "
            "corpus this size well: for a useful model set model.base to a pretrained Qwen "
            "(e.g. Qwen/Qwen2.5-0.5B-Instruct, on a GPU); to pretrain the tiny base longer "
            "anyway, raise tiny.max_tokens",
            parameters / 1e6,
            t.epochs,
            f"{plan.uncapped_steps:,}",
            f"{plan.uncapped_steps * step_tokens:,}",
            plan.uncapped_steps * step_tokens / t.max_tokens,
            f"{t.max_tokens:,}",
            plan.epochs,
        )


def pretrain(
    model, docs: list[list[int]], eot: int, t: TinyModelConfig, plan: PretrainPlan
) -> float:
    """Full-parameter causal-LM training on re-packed blocks for `plan.steps`; returns the last
    epoch's mean loss (over the steps it ran, when the token budget ends it early)."""
    import torch
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(t.seed)
    _announce(plan, t, sum(p.numel() for p in model.parameters()))
    steps = plan.steps
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    bar = tqdm(total=steps, desc="pretrain tiny-qwen", unit="step", mininterval=2)
    timer = WarmupEstimate("base", steps)
    epoch_loss, done = float("nan"), 0
    for _ in range(math.ceil(plan.epochs)):
        losses = []
        for batch in _packed_blocks(docs, eot, t.block_size, gen).split(t.batch_size):
            if done == steps:  # the token budget ends the last epoch early
                break
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.bf16):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            done += 1
            bar.update()
            timer.step()
        epoch_loss = sum(losses) / len(losses)
        bar.set_postfix(loss=f"{epoch_loss:.3f}")
    bar.close()
    return epoch_loss


def tokenized_corpus(train_rows: list[dict], t: TinyModelConfig) -> tuple[object, list]:
    """The tiny base's tokenizer, and its pretraining documents as token ids."""
    docs = _corpus(train_rows)
    # The tokenizer also sees the rendered chats, so the template's system prompt is few tokens.
    # Rendering does not depend on the vocabulary: a minimal tokenizer only carries the template.
    tok = build_tokenizer(docs[:8], 300)
    rendered = [tok.apply_chat_template(r["conversations"], tokenize=False) for r in train_rows]
    tok = build_tokenizer(docs + rendered, t.vocab_size)
    docs += _chat_warmup(tok, train_rows, t.chat_warmup)
    return tok, [tok(doc, add_special_tokens=False)["input_ids"] for doc in docs]


def build_tiny_base(train_rows: list[dict], t: TinyModelConfig, out: Path) -> BaseResult:
    """Tokenizer + pretrained tiny Qwen2, saved (safetensors) to `out`."""
    import torch

    start = time.perf_counter()
    torch.manual_seed(t.seed)
    tok, ids = tokenized_corpus(train_rows, t)
    model = new_model(tok, t)
    plan = plan_pretraining(ids, t)
    loss = pretrain(model, ids, tok.pad_token_id, t, plan)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    params = sum(p.numel() for p in model.parameters())
    seconds = time.perf_counter() - start
    return BaseResult(out, True, len(tok), params, loss, seconds, plan.steps, plan.epochs)


def run(cfg: Config) -> BaseResult:
    paths = cfg.paths
    if not cfg.uses_builtin_base:
        with atomic_dir(paths.base_dir) as tmp:
            write_json(
                tmp / "reference.json", {"base": cfg.model.base, "revision": cfg.model.revision}
            )
        log.info("base: using %s@%s; nothing to build", cfg.model.base, cfg.model.revision)
        write_json(paths.reports / "base.json", {"built": False})
        return BaseResult(paths.base_dir, built=False)
    log.info("base: building tiny-qwen from %s", paths.split_file("train"))
    result = build_tiny_base(read_jsonl(paths.split_file("train")), cfg.tiny, paths.base_dir)
    write_json(
        paths.reports / "base.json",
        {
            "built": True,
            "vocab_size": result.vocab_size,
            "parameters": result.parameters,
            "pretrain_loss": round(result.final_loss, 4),
            "pretrain_steps": result.steps,
            "pretrain_epochs": round(result.epochs, 2),
            "seconds": round(result.seconds, 1),
        },
    )
    log.info(
        "base: %d parameters, vocab %d, pretrain loss %.3f in %.0f s",
        result.parameters,
        result.vocab_size,
        result.final_loss,
        result.seconds,
    )
    return result
