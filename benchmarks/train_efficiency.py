"""Training throughput and memory: this pipeline's batching vs the naive script approach, and
peak memory for none / 8-bit / 4-bit.

    .venv/bin/python benchmarks/train_efficiency.py [--steps 12]

Throughput: the same tiny Qwen2 (built as the `base` stage builds it) trains with LoRA on the
same conversations three ways, in one run: (a) the approach common in fine-tuning scripts (and
the original project's): every sample padded to a fixed 512 tokens, batch 4; (b) this stage's
default batching: dynamic padding to the longest member, batches grouped by length; (c)
`train.packing: true`: each batch's conversations (not grouped by length) flattened into one
row with restarting position_ids, no padding, a block-diagonal causal mask. It prints useful
(non-pad) tokens per second for each, the padding waste, and the (b) / (a) ratio.

Memory: a configuration whose weights dominate memory (hidden 1024, 8 layers, ~100 M
parameters) is loaded and trained for a few LoRA steps in a fresh process per mode, the way the
train stage does it: `pipeline.modeling.load_model` (bitsandbytes for 8-bit / 4-bit), then
`pipeline.training.lora.lora_model` (`prepare_for_training`, which keeps non-quantized weights in
their
loaded dtype, and the LoRA of params.yaml). The peak resident memory (sampled every 5 ms) above
the process's memory after its imports and tokenizer is printed for each mode, then the 4-bit /
none ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _conversations(n: int) -> list[dict]:
    rows = [
        json.loads(x) for x in (REPO / "data/raw/medical_dialogues.jsonl").read_text().splitlines()
    ]
    return (rows * (n // len(rows) + 1))[:n]


def _tokenizer(cfg, rows: list[dict]):
    """The tiny base's tokenizer (byte-level BPE with ChatML tokens), trained on 450 rows."""
    from pipeline.training.tiny import build_tokenizer

    texts = ["\n".join(t["content"] for t in r["conversations"]) for r in rows[:450]]
    return build_tokenizer(texts, cfg.tiny.vocab_size)


def _batches_dynamic(encoded: list[dict], batch: int) -> list[list[dict]]:
    ordered = sorted(encoded, key=lambda e: len(e["input_ids"]))
    return [ordered[i : i + batch] for i in range(0, len(ordered), batch)]


def _tensor(batch: list[dict], width: int, pad: int):
    import torch

    ids = torch.full((len(batch), width), pad)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for j, e in enumerate(batch):
        n = min(len(e["input_ids"]), width)
        ids[j, :n] = torch.tensor(e["input_ids"][:n])
        labels[j, :n] = torch.tensor(e["labels"][:n])
        mask[j, :n] = 1
    return ids, labels, mask


def _padded(width_of, pad: int):
    def collate(batch: list[dict]):
        ids, labels, mask = _tensor(batch, width_of(batch), pad)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}, int(mask.sum())

    return collate


def _packed(batch: list[dict]):
    from transformers import DataCollatorWithFlattening

    rows = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in batch]
    packed = DataCollatorWithFlattening(return_position_ids=True)(rows)
    return packed, packed["input_ids"].numel()


def _train(model, batches, collate, steps: int) -> tuple[float, int, int]:
    """Seconds, useful tokens and total tokens for `steps` optimizer steps (after one warm-up)."""
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    useful = total = 0
    start = 0.0
    for i, batch in enumerate(batches[: steps + 1]):
        if i == 1:
            start, useful, total = time.perf_counter(), 0, 0
        inputs, real = collate(batch)
        model(**inputs).loss.backward()
        opt.step()
        opt.zero_grad()
        useful += real
        total += inputs["input_ids"].numel()
    return time.perf_counter() - start, useful, total


def throughput(steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model

    from pipeline.config import load_config
    from pipeline.generation import encode
    from pipeline.training.tiny import new_model

    cfg = load_config(REPO / "params.yaml")
    rows = _conversations(600)
    tok = _tokenizer(cfg, rows)
    encoded = [encode(tok, r["conversations"], 512) for r in rows]
    torch.manual_seed(0)
    base = new_model(tok, cfg.tiny)
    base.config.use_cache = False  # as the Trainer trains; packed rows need it
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    pad = tok.pad_token_id
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = [encoded[i] for i in order]
    naive = [shuffled[i : i + 4] for i in range(0, len(shuffled), 4)]
    dynamic = _batches_dynamic(shuffled, cfg.train.batch_size)
    dynamic = [dynamic[i] for i in torch.randperm(len(dynamic)).tolist()]
    packs = [
        shuffled[i : i + cfg.train.batch_size]
        for i in range(0, len(shuffled), cfg.train.batch_size)
    ]
    results = {}
    for name, batches, collate in (
        ("naive: pad to 512, batch 4", naive, _padded(lambda b: 512, pad)),
        (
            f"pipeline: pad to longest, grouped, batch {cfg.train.batch_size}",
            dynamic,
            _padded(lambda b: max(len(e["input_ids"]) for e in b), pad),
        ),
        (f"packing: {cfg.train.batch_size} per row, no padding", packs, _packed),
    ):
        seconds, useful, total = _train(model, batches, collate, steps)
        results[name] = useful / seconds
        print(
            f"{name:<48} {useful / seconds:9.0f} useful tokens/s   padding waste "
            f"{1 - useful / total:6.1%}   ({useful} tokens in {seconds:.1f} s)"
        )
    naive_tps, ours_tps, _ = results.values()
    return ours_tps / naive_tps


MEMORY_CHILD = """
import dataclasses, sys, threading, time, psutil, torch
sys.path.insert(0, {repo!r})
from pipeline.config import load_config
from pipeline.modeling import ModelSpec, load_model, load_tokenizer
from pipeline.training.speed import resolve
from pipeline.training.lora import lora_model
cfg = load_config({params!r})
spec = dataclasses.replace(ModelSpec.from_config(cfg, source={path!r}), quantization={mode!r})
tok = load_tokenizer(spec)
proc = psutil.Process()
base = peak = proc.memory_info().rss
def sample():
    global peak
    while True:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
model = lora_model(load_model(spec, **resolve(cfg.train.speed).load_kwargs()), cfg, tok)
import gc; gc.collect(); time.sleep(0.05)
load_peak, peak = peak, proc.memory_info().rss  # training peak from here
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
ids = torch.randint(0, len(tok), (2, 64))
for _ in range(3):
    model(input_ids=ids, labels=ids).loss.backward(); opt.step(); opt.zero_grad()
time.sleep(0.05)
print((load_peak - base) / 2**20, (peak - base) / 2**20, str(model.dtype).removeprefix("torch."))
"""


def memory() -> float:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from pipeline.config import load_config

    cfg = load_config(REPO / "params.yaml")
    lora = cfg.train.lora
    with tempfile.TemporaryDirectory() as tmp:
        tok = _tokenizer(cfg, _conversations(600))
        torch.manual_seed(0)
        config = Qwen2Config(
            vocab_size=len(tok),
            hidden_size=1024,
            num_hidden_layers=8,
            num_attention_heads=16,
            num_key_value_heads=4,
            intermediate_size=2816,
            tie_word_embeddings=True,
        )
        model = Qwen2ForCausalLM(config)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        del model
        peaks = {}
        for mode in ("none", "8bit", "4bit"):
            code = MEMORY_CHILD.format(
                repo=str(REPO), params=str(REPO / "params.yaml"), path=tmp, mode=mode
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            load, train, dtype = out.stdout.strip().splitlines()[-1].split()
            peaks[mode] = float(train)
            print(
                f"{mode:>4}: peak while training {float(train):7.1f} MiB, peak while loading "
                f"{float(load):7.1f} MiB above the process baseline ({params / 1e6:.0f} M "
                f"parameters, {dtype} unquantized, LoRA r={lora.r} of params.yaml, 3 steps)"
            )
    return peaks["4bit"] / peaks["none"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    ratio = throughput(args.steps)
    mem = memory()
    print(f"4-bit / unquantized peak memory: {mem:.2f}x")
    print(f"throughput ratio (pipeline / naive): {ratio:.2f}x; 4-bit memory ratio: {mem:.2f}x")


if __name__ == "__main__":
    main()
