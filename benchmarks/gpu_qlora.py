"""QLoRA on a CUDA GPU: tokens/s and peak GPU memory for the tiny model and a mid-size config.

    python benchmarks/gpu_qlora.py [--steps 10] [--seq 512] [--with-7b] [--json FILE]
    python benchmarks/gpu_qlora.py --smoke        # the same code paths, small, on any device

1. Tiny: the embedded tiny Qwen2 (this project's tokenizer and chat template, built from
   data/raw; random weights: speed and memory do not depend on them) loaded in 4-bit NF4 through
   pipeline.modeling, LoRA as in params.yaml, trained on the project's conversations with the
   train stage's batching (answer-only labels, padded to the longest member, length-grouped).
2. Mid-size, one fresh process per quantization mode (none = bf16, 8bit, 4bit NF4 + double
   quant), random bf16 weights saved as safetensors, LoRA r=16 on all linear layers, gradient
   checkpointing, batch 1 x `--seq` tokens (default 512): a shape whose weights dominate memory
   (4096 wide, 16 layers, 32k vocabulary, 2.97 B), where the 4-bit / none ratio of peak
   allocated GPU memory shows what quantizing the linear layers saves; then Qwen2.5-3B's shape
   (none and 4-bit), whose 152k-token embedding stays in bf16.
3. `--with-7b`: Qwen2.5-7B's shape, bf16 and 4-bit, at 1,024 tokens: the README's figure.

Each result is printed as it comes and written to `--json` (so a run cut short keeps what it
measured). Without CUDA the script exits 0 after saying so, unless `--smoke` asks for a CPU run.
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

# name: (hidden, layers, heads, kv_heads, intermediate, vocab, tied embeddings)
SHAPES = {
    "qwen2.5-3b": (2048, 36, 16, 2, 11008, 151936, True),
    "qwen2.5-7b": (3584, 28, 28, 4, 18944, 152064, False),
    # Weights dominate: LLaMA-7B-like width, half the depth, a 32k vocabulary.
    "wide-32k": (4096, 16, 32, 8, 11008, 32000, True),
    "smoke": (256, 2, 4, 2, 704, 4096, True),
}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _peak_mib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _lora(model, r: int, alpha: int, checkpointing: bool):
    """LoRA on all linear layers, prepared as the train stage prepares it."""
    from peft import LoraConfig, get_peft_model

    from pipeline.modeling import prepare_for_training

    model = prepare_for_training(model, checkpointing)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _steps(model, batches, steps: int, bf16: bool) -> dict[str, float]:
    """Optimizer steps over `batches` (one warm-up step first): seconds and useful tokens/s."""
    import torch

    model.train()  # gradient checkpointing (and dropout) only act in training mode
    dev = next(p.device for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    useful = 0
    start = 0.0
    losses = []
    for i in range(steps + 1):
        ids, labels, mask = (t.to(dev) for t in batches[i % len(batches)])
        if i == 1:
            _sync()
            start, useful = time.perf_counter(), 0
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        useful += int(mask.sum())
        losses.append(float(loss.detach()))
    _sync()
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 3),
        "tokens_per_s": round(useful / seconds, 1),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


def tiny(steps: int, smoke: bool) -> dict:
    """The embedded tiny model in 4-bit through the project's own loader and batching."""
    import torch

    from pipeline.config import load_config
    from pipeline.generation import encode
    from pipeline.modeling import ModelSpec, load_model
    from pipeline.training.tiny import build_tokenizer, new_model

    cfg = load_config(REPO / "params.yaml")
    rows = [
        json.loads(x)
        for x in (REPO / "data/raw/medical_dialogues.jsonl").read_text("utf-8").splitlines()
    ]
    tok = build_tokenizer(["\n".join(t["content"] for t in r["conversations"]) for r in rows], 3000)
    encoded = sorted(
        (encode(tok, r["conversations"], cfg.preprocess.max_seq_len) for r in rows),
        key=lambda e: e["length"],
    )
    bs = cfg.train.batch_size
    batches = []
    for i in range(0, len(encoded), bs):
        group = encoded[i : i + bs]
        width = max(e["length"] for e in group)
        ids = torch.full((len(group), width), tok.pad_token_id)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        for j, e in enumerate(group):
            ids[j, : e["length"]] = torch.tensor(e["input_ids"])
            labels[j, : e["length"]] = torch.tensor(e["labels"])
            mask[j, : e["length"]] = 1
        batches.append((ids, labels, mask))
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [batches[i] for i in order]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        new_model(tok, cfg.tiny).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _reset_peak()
        spec = ModelSpec(
            source=tmp,
            revision="main",
            trust_remote_code=False,
            dtype="bfloat16" if _cuda() else "float32",
            quantization="4bit",
            compute_dtype="bfloat16" if _cuda() else "float32",
        )
        model = _lora(load_model(spec), cfg.train.lora.r, cfg.train.lora.alpha, False)
        result = _steps(model, batches, steps, bf16=_cuda())
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "what": f"tiny Qwen2 4-bit NF4 QLoRA r={cfg.train.lora.r}, batch {bs}, pad-to-longest",
        "params": n_params,
        "peak_gpu_mib": _peak_mib(),
        **result,
    }


CHILD = """
import json, sys, time, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {here!r})
import gpu_qlora as g
from pipeline.modeling import ModelSpec, load_model
g._reset_peak()
t0 = time.perf_counter()
spec = ModelSpec(source={path!r}, revision="main", trust_remote_code=False, dtype={dtype!r},
                 quantization={mode!r}, compute_dtype={dtype!r})
model = load_model(spec)
load_s = time.perf_counter() - t0
load_peak = g._peak_mib()
model = g._lora(model, 16, 32, True)
gen = torch.Generator().manual_seed(0)
ids = torch.randint(0, {vocab}, (1, {seq}), generator=gen)
batch = (ids, ids.clone(), torch.ones_like(ids))
g._reset_peak()
result = g._steps(model, [batch], {steps}, bf16={bf16})
print("RESULT", json.dumps(dict(load_s=round(load_s, 1), load_peak_gpu_mib=load_peak,
      peak_gpu_mib=g._peak_mib(), **result)))
"""


def _save_random(shape: str, directory: str) -> int:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, layers, heads, kv, inter, vocab, tied = SHAPES[shape]
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        tie_word_embeddings=tied,
        max_position_embeddings=32768,
    )
    dev = "cuda" if _cuda() else "cpu"
    dtype = torch.bfloat16 if _cuda() else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2ForCausalLM(config).to(dtype)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="4GB")
    del model
    if _cuda():
        torch.cuda.empty_cache()
    return n


def mid(shape: str, modes: list[str], steps: int, seq: int, report) -> dict:
    out: dict = {"shape": shape, "seq": seq, "steps": steps, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out["params"] = _save_random(shape, tmp)
        out["build_s"] = round(time.perf_counter() - t0, 1)
        dtype = "bfloat16" if _cuda() else "float32"
        for mode in modes:
            code = CHILD.format(
                repo=str(REPO),
                here=str(Path(__file__).parent),
                path=tmp,
                dtype=dtype,
                mode=mode,
                vocab=SHAPES[shape][5],
                seq=seq,
                steps=steps,
                bf16=_cuda(),
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                out["modes"][mode] = {"error": proc.stderr.strip().splitlines()[-5:]}
            else:
                out["modes"][mode] = json.loads(line[-1][len("RESULT ") :])
            report(out)
    peaks = {m: r.get("peak_gpu_mib") for m, r in out["modes"].items()}
    if peaks.get("none") and peaks.get("4bit"):
        out["ratio_4bit_vs_none"] = round(peaks["4bit"] / peaks["none"], 3)
    if peaks.get("none") and peaks.get("8bit"):
        out["ratio_8bit_vs_none"] = round(peaks["8bit"] / peaks["none"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seq", type=int, default=512, help="tokens per step (mid-size)")
    parser.add_argument("--with-7b", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="small shapes; runs without CUDA")
    parser.add_argument("--json", type=Path, help="write the results here as they come")
    args = parser.parse_args()
    if not _cuda() and not args.smoke:
        print("no CUDA device: skipped (use --smoke for a CPU run of the same code paths)")
        return
    import torch

    results: dict = {
        "device": torch.cuda.get_device_name() if _cuda() else "cpu",
        "torch": torch.__version__,
    }

    def report(part=None):
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))

    try:
        results["tiny"] = tiny(args.steps if not args.smoke else 3, args.smoke)
    except Exception as exc:  # keep measuring the other configurations
        results["tiny"] = {"error": f"{type(exc).__name__}: {exc}"}
    print("tiny:", json.dumps(results["tiny"]), flush=True)
    report()
    runs = (
        [("smoke", ["none", "8bit", "4bit"], 64, 3)]
        if args.smoke
        else [
            ("wide-32k", ["none", "8bit", "4bit"], args.seq, args.steps),
            ("qwen2.5-3b", ["none", "4bit"], args.seq, args.steps),
        ]
    )
    if args.with_7b and not args.smoke:
        runs.append(("qwen2.5-7b", ["none", "4bit"], 1024, args.steps))
    for shape, modes, seq, steps in runs:
        results[shape] = mid(
            shape, modes, steps, seq, lambda part, k=shape: (results.__setitem__(k, part), report())
        )
        for mode, r in results[shape]["modes"].items():
            print(f"{shape} {mode} seq {seq}:", json.dumps(r), flush=True)
        if "ratio_4bit_vs_none" in results[shape]:
            print(f"{shape}: 4-bit / none peak GPU memory {results[shape]['ratio_4bit_vs_none']}x")
        report()


if __name__ == "__main__":
    main()
